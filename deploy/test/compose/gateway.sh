#!/usr/bin/env bash
# Sourced by the tests: runs deploy/gateway/default.conf.template — the file the Compose gateway
# (and any nginx image with /etc/nginx/templates) uses — in Debian's nginx on this machine, so
# the routing is tested without pulling an image. Everything the nginx writes (its rendered
# configuration, pid, logs, temporary files) is in a folder of its own, and it listens on
# 127.0.0.1 only.
#
#   source deploy/test/compose/gateway.sh
#   gateway_start PORT EVENTS BOOKINGS USERS WEB   # each upstream as host:port
#   ...                                            # http://127.0.0.1:PORT
#   gateway_stop

gateway_dir_of_script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GATEWAY_TEMPLATE="${GATEWAY_TEMPLATE:-$gateway_dir_of_script/../../gateway/default.conf.template}"
gateway_dir=""

# apt_install (scripts/services.sh) installs nginx without starting it.
# shellcheck source=scripts/services.sh
source "$gateway_dir_of_script/../../../scripts/services.sh"

# Debian's nginx-light (or any nginx already installed), and envsubst (gettext-base).
gateway_ensure_nginx() {
  if [ -x /usr/sbin/nginx ] && command -v envsubst >/dev/null 2>&1; then return 0; fi
  echo "installing nginx-light and gettext-base (Debian packages)"
  # Newer releases (Ubuntu 24.04, Debian 13) have no nginx-light: their nginx is as light.
  apt_install nginx-light gettext-base || apt_install nginx gettext-base
}

# gateway_render LISTEN EVENTS BOOKINGS USERS WEB OUT: the template with only its five variables
# replaced (nginx's own $variables stay as they are), as the nginx image's envsubst step does.
# shellcheck disable=SC2016 # envsubst is given the names in single quotes, not their values
gateway_render() {
  GATEWAY_LISTEN="$1" EVENTS_UPSTREAM="$2" BOOKINGS_UPSTREAM="$3" USERS_UPSTREAM="$4" \
    WEB_UPSTREAM="$5" envsubst \
    '${GATEWAY_LISTEN} ${EVENTS_UPSTREAM} ${BOOKINGS_UPSTREAM} ${USERS_UPSTREAM} ${WEB_UPSTREAM}' \
    <"$GATEWAY_TEMPLATE" >"$6"
}

# gateway_write_conf DIR LISTEN EVENTS BOOKINGS USERS WEB: DIR/nginx.conf, a main configuration
# around the rendered template with every path inside DIR.
gateway_write_conf() {
  local dir="$1"
  shift
  mkdir -p "$dir/logs" "$dir/tmp"
  gateway_render "$@" "$dir/default.conf" || return 1
  local user_line=""
  if [ "$(id -u)" = 0 ]; then
    # Workers of a root master run as nobody: let them use the temporary folders.
    user_line="user nobody nogroup;"
    chmod 755 "$dir"
    chown nobody:nogroup "$dir/tmp"
  fi
  cat >"$dir/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 512; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    include $dir/default.conf;
}
CONF
}

# gateway_check LISTEN EVENTS BOOKINGS USERS WEB: renders the template and has nginx test it.
# Upstream host names must resolve; nothing is started.
gateway_check() {
  gateway_ensure_nginx || return 1
  local dir
  dir="$(mktemp -d)"
  gateway_write_conf "$dir" "$@" \
    && /usr/sbin/nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
  local rc=$?
  rm -rf "$dir"
  return "$rc"
}

# gateway_start PORT EVENTS BOOKINGS USERS WEB: starts the gateway on 127.0.0.1:PORT and waits
# (at most 10 s) until it answers its own /gateway/health.
gateway_start() {
  local port="$1"
  shift
  gateway_ensure_nginx || return 1
  gateway_dir="$(mktemp -d)"
  gateway_write_conf "$gateway_dir" "127.0.0.1:$port" "$@" || return 1
  /usr/sbin/nginx -p "$gateway_dir" -c "$gateway_dir/nginx.conf" -e "$gateway_dir/logs/error.log" \
    || { cat "$gateway_dir/logs/error.log" >&2; return 1; }
  local _
  for _ in $(seq 1 100); do
    if curl -fsS --max-time 1 "http://127.0.0.1:$port/gateway/health" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "the gateway did not answer on 127.0.0.1:$port" >&2
  cat "$gateway_dir/logs/error.log" >&2
  return 1
}

# gateway_stop: stops the nginx gateway_start started (by the pid in its own pid file) and
# removes its folder. Harmless when none runs.
gateway_stop() {
  [ -n "$gateway_dir" ] || return 0
  if [ -s "$gateway_dir/nginx.pid" ]; then
    local pid
    pid="$(cat "$gateway_dir/nginx.pid")"
    kill -QUIT "$pid" 2>/dev/null
    local _
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -rf "$gateway_dir"
  gateway_dir=""
}

# gateway_logs: the access and error logs so far (for a failed test's output).
gateway_logs() {
  [ -n "$gateway_dir" ] || return 0
  tail -n 50 "$gateway_dir/logs/access.log" "$gateway_dir/logs/error.log" 2>/dev/null
}
