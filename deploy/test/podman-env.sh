#!/usr/bin/env bash
# Sourced by the container tests: installs buildah and podman (Debian packages) when missing and
# points both at the project's settings and at an image store of their own under
# ~/.cache/myevents/containers, so the tests neither need nor change the machine's defaults.
# Every container the tests run uses the host's network (--network host): podman's own networks
# use private address ranges, and these tests send traffic to loopback only.

podman_env_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ensure_container_tools() {
  if ! command -v buildah >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1 \
    || ! command -v runc >/dev/null 2>&1; then
    echo "installing buildah, podman and runc (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman \
      runc skopeo umoci containernetworking-plugins >/dev/null || return 1
  fi
  local store="${MYEVENTS_CONTAINERS_DIR:-$HOME/.cache/myevents/containers}"
  mkdir -p "$store/storage" "$store/run"
  export CONTAINERS_CONF="$podman_env_dir/containers.conf"
  export CONTAINERS_STORAGE_CONF="$store/storage.conf"
  cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$store/storage"
runroot = "$store/run"
CONF
}
