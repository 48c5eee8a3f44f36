#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and RabbitMQ.
#
# With PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and RabbitMQ on 127.0.0.1:5672
# (guest/guest, `rabbitmqctl` on PATH) it uses them. Otherwise, with Docker, it starts the two
# from docker-compose.yml (on 127.0.0.1:55432 and :55672) and manages RabbitMQ vhosts through the container. Each test creates
# and drops its own database and vhost. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if local_services && command -v rabbitmqctl >/dev/null 2>&1; then
  say "test: using PostgreSQL and RabbitMQ on 127.0.0.1"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  say "test: starting PostgreSQL and RabbitMQ with docker compose"
  docker compose up -d --wait postgres rabbitmq
  export ICON_TEST_DATABASE_URL="postgres://postgres:icon@127.0.0.1:55432/postgres"
  export ICON_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:55672"
  export ICON_TEST_RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl"
else
  say "test: needs PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672 with rabbitmqctl, or a running Docker engine"
  exit 1
fi

# The /docs test renders the page in headless Chromium (ICON_TEST_NO_BROWSER=1 skips it).
if ! command -v chromium >/dev/null 2>&1 && [ "${ICON_TEST_NO_BROWSER:-}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "test: installing chromium for the /docs browser test"
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  elif [ "${CI:-}" = true ]; then
    say "test: no chromium; the /docs browser test will fail (apt-get install -y chromium)"
  else
    # A laptop without Chromium still gets every other test; CI always runs this one.
    say "test: no chromium found: SKIPPING the /docs browser test (install chromium to run it)"
    export ICON_TEST_NO_BROWSER=1
  fi
fi

say "test: building the binaries the fault suite runs as processes (first build takes a few minutes)"
cargo build --workspace --locked --bins
say "test: cargo test --workspace"
rm -f target/fault-report.txt
status=0
cargo test --workspace --locked --no-fail-fast "$@" || status=$?
if [ -s target/fault-report.txt ]; then
  say "test: fault suite figures (lost and double_orders must be 0)"
  cat target/fault-report.txt
fi
exit "$status"
