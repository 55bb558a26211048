#!/usr/bin/env bash
# Builds deploy/Dockerfile's runtime stage here, where no base image can be pulled: from the
# binary the tests already built and the built web UI, around a base made FROM scratch of what
# that binary needs (the loader and the shared libraries `ldd` names, CA certificates, a passwd
# entry for uid 65532). Sourced by the container tests; usage:
#   build_test_image BINARY WEB_DIST [TAG]     (TAG defaults to localhost/myevents:test)

image_script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/test/podman-env.sh
source "$image_script_dir/podman-env.sh"

# The files of a scratch base that runs BINARY, copied into DIR.
base_rootfs() {
  local binary="$1" dir="$2" lib
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp"
  # `ldd` prints "name => /path (addr)" and the loader as "/lib64/ld-linux… (addr)".
  for lib in $(ldd "$binary" | grep -oE '/[^ ]+'); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  chmod 1777 "$dir/tmp"
}

# An image made of DIR's files alone.
image_from_dir() {
  local dir="$1" tag="$2" container
  container="$(buildah from scratch)" || return 1
  buildah copy "$container" "$dir" / >/dev/null \
    && buildah commit --quiet "$container" "$tag" >/dev/null
  local status=$?
  buildah rm "$container" >/dev/null
  return "$status"
}

build_test_image() {
  local binary="$1" web="$2" tag="${3:-localhost/myevents:test}" work status
  [ -x "$binary" ] || { echo "build_test_image: no binary at $binary" >&2; return 1; }
  [ -f "$web/index.html" ] || { echo "build_test_image: no built web UI in $web" >&2; return 1; }
  ensure_container_tools || return 1
  work="$(mktemp -d)"
  base_rootfs "$binary" "$work/base"
  # What the Dockerfile's `dist` stage holds: the binary, the UI and an empty /data.
  mkdir -p "$work/dist/dist/data"
  # Without its debug information: a test build carries hundreds of megabytes of it.
  objcopy --strip-debug "$binary" "$work/dist/dist/myevents" || { rm -rf "$work"; return 1; }
  cp -r "$web" "$work/dist/dist/web"
  image_from_dir "$work/base" localhost/myevents-base:test \
    && image_from_dir "$work/dist" localhost/myevents-dist:test \
    && buildah bud --quiet --isolation chroot --pull=never --layers=false \
      -f "$image_script_dir/../Dockerfile" --target runtime \
      --build-arg RUNTIME_BASE=localhost/myevents-base:test \
      --build-arg DIST=localhost/myevents-dist:test \
      --build-arg GIT_COMMIT="$(git -C "$image_script_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
      -t "$tag" "$image_script_dir/../.." >/dev/null
  status=$?
  rm -rf "$work"
  [ "$status" -eq 0 ] && echo "built $tag ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
  return "$status"
}
