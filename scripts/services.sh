#!/usr/bin/env bash
# The real servers the tests talk to. `ensure_rabbitmq` reuses a RabbitMQ that answers on
# 127.0.0.1:5672 and otherwise installs (Debian package) and starts one. Sourced by scripts/test.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
