#!/usr/bin/env bash
# The container image, for real: builds deploy/Dockerfile's runtime stage from the binary the
# tests built (deploy/test/image.sh), runs it with podman on the host's network, and checks that
# it runs as a non-root user on a read-only root filesystem, writes only to /data, answers
# /health/ready, and passes the README's walk-through. Prints `ok …` / `FAILED …` per check and
# a closing `image: N passed, M failed`.
#   deploy/test/image-test.sh BINARY WEB_DIST
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/test/image.sh
source "$here/image.sh"
# shellcheck source=scripts/checks.sh
source "$here/../../scripts/checks.sh"

binary="${1:?usage: image-test.sh BINARY WEB_DIST}"
web="${2:?usage: image-test.sh BINARY WEB_DIST}"
image="${MYEVENTS_IMAGE:-localhost/myevents:test}"
name="myevents-image-test-$$"

data="$(mktemp -d)"
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1
  rm -rf "$data"
}
trap cleanup EXIT

if ! build_test_image "$binary" "$web" "$image"; then
  bad "the image builds"
  summary image
  exit 1
fi
ok "the image builds"

inspect() { podman image inspect --format "$1" "$image"; }
check "the image runs myevents as its entrypoint, as a non-root user, with ports 8181 9100 50051" \
  test "$(inspect '{{json .Config.Entrypoint}} {{.Config.User}} {{len .Config.ExposedPorts}}')" \
  = '["/usr/local/bin/myevents"] 65532:65532 3'
check "the image carries OCI labels" \
  test -n "$(inspect '{{index .Labels "org.opencontainers.image.revision"}}')"

version="$(podman run --rm --network host --read-only "$image" --version 2>&1)"
check "myevents --version in the image names the version and the commit ($version)" \
  grep -qE '^myevents [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]{7,}' <<<"$version"

# The data folder belongs to the image's user, as a Kubernetes fsGroup or a named volume would.
chown 65532:65532 "$data"
api="$(free_port)" metrics="$(free_port)" grpc="$(free_port)"
podman run -d --name "$name" --network host --read-only -v "$data:/data" \
  -e MYEVENTS_LISTEN="127.0.0.1:$api" -e MYEVENTS_METRICS_LISTEN="127.0.0.1:$metrics" \
  -e MYEVENTS_GRPC_LISTEN="127.0.0.1:$grpc" \
  -e MYEVENTS_ADMIN_EMAIL=admin@example.com -e MYEVENTS_ADMIN_PASSWORD=admin-password \
  "$image" >/dev/null || bad "the container starts"

ready=0
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api/health/ready")" = 200 ]; then
    ready=1
    break
  fi
  sleep 0.2
done
check "/health/ready answers 200" test "$ready" = 1
[ "$ready" = 1 ] || podman logs "$name" 2>&1 | tail -20

pid="$(podman inspect --format '{{.State.Pid}}' "$name")"
check "the server runs as uid 65532, not root" test "$(ps -o uid= -p "$pid" | tr -d ' ')" = 65532
check "the root filesystem is read-only" \
  test "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true
# The same binary, asked to write outside /data, cannot; inside /data it can.
check "writing outside /data fails: the root filesystem is read-only" \
  bash -c "podman run --rm --network host --read-only '$image' gen-cert --host x --out /usr/local 2>&1 | grep -q 'Read-only file system'"
# What the image's base must hold: distroless/cc has glibc and libgcc_s, nothing more.
check "the binary needs no shared library beyond glibc and libgcc_s" \
  bash -c "! ldd '$binary' | grep -vE 'linux-vdso|libgcc_s|libm\.so|libc\.so|ld-linux' | grep -q ."
check "writing inside /data works" \
  podman run --rm --network host --read-only -v "$data:/data" "$image" gen-cert --host x --out /data
check "the web UI is served at /" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api/")" = 200
check "metrics are served" curl -sf "http://127.0.0.1:$metrics/metrics" -o /dev/null
check "the README walk-through passes against the container" \
  env API="http://127.0.0.1:$api" bash "$here/walkthrough.sh"
check "the databases and the mail are in /data" \
  test -f "$data/bookings.db" -a -d "$data/mail"

echo "image size: $(podman image inspect --format '{{.Size}}' "$image") bytes"
summary image
