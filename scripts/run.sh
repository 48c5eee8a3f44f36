#!/usr/bin/env bash
# Runs the whole system: icon-gateway on :8080, icon-checkout-worker, icon-notifier and
# icon-retailer-sim on :8090. Ctrl-C stops everything.
#
# With PostgreSQL and RabbitMQ on 127.0.0.1 (as on ICON's development machines) it builds the
# binaries and runs them here, with settings for a local demo. Otherwise, with Docker, it runs
# the whole stack with `docker compose up --build`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Seals the webhook secrets in the database: a random key made on the first run and kept in
# .run/ (git-ignored), so secrets stored by one run still open in the next.
if [ -z "${ICON_SECRETS_KEY:-}" ]; then
  mkdir -p .run
  [ -s .run/secrets-key ] || (umask 077 && random_key >.run/secrets-key)
  ICON_SECRETS_KEY="$(cat .run/secrets-key)"
fi
export ICON_SECRETS_KEY

if ! local_services; then
  if command -v docker >/dev/null 2>&1; then
    say "run: no PostgreSQL/RabbitMQ on 127.0.0.1; running everything with docker compose"
    # docker-compose.yml ships no secret; this run gets a random one (mint tokens with
    # `docker compose exec gateway icon-gateway token ...`, which reads it there).
    export ICON_JWT_SECRET="${ICON_JWT_SECRET:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"
    exec docker compose up --build
  fi
  say "run: needs PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672, or Docker"
  exit 1
fi

profile="${ICON_RUN_PROFILE:-release}"
bin=target/$profile
# ICON_RUN_BUILD=0 runs the binaries already built (scripts/bench.sh builds them first).
if [ "${ICON_RUN_BUILD:-1}" != 0 ]; then
  say "run: building the four binaries ($profile; the first build takes a few minutes)"
  if [ "$profile" = release ]; then
    cargo build --release --locked --bins
  else
    cargo build --locked --bins
    bin=target/debug
  fi
elif [ "$profile" != release ]; then
  bin=target/debug
fi

# Settings for a local demo. Every one can be overridden from the environment.
export ICON_DATABASE_URL="${ICON_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/icon}"
export ICON_AMQP_URL="${ICON_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export ICON_HTTP_ADDR="${ICON_HTTP_ADDR:-127.0.0.1:8080}"
# A well-known demo secret (at least 32 bytes, as the gateway demands): the gateway listens on
# loopback only. The walkthrough in the README exports the same value to mint tokens.
export ICON_JWT_SECRET="${ICON_JWT_SECRET:-demo-secret-for-local-runs-only-change-me}"
# Generous, so the walkthrough and icon-bench from this machine are never throttled; the
# default (20/s burst 40 per IP and per token subject) is for production.
export ICON_RATE_LIMIT="${ICON_RATE_LIMIT:-2000/s burst 4000}"
# The simulator's callback sink is on loopback; production leaves this empty.
export ICON_CALLBACK_ALLOW_NETWORKS="${ICON_CALLBACK_ALLOW_NETWORKS:-127.0.0.0/8,::1/128}"
# ...and speaks plain http (no certificate); production leaves this unset: https only.
export ICON_CALLBACK_ALLOW_HTTP="${ICON_CALLBACK_ALLOW_HTTP:-true}"
# The demo retailers are the simulator on loopback, over plain http; the gateway checks order
# URLs at registration, the worker before each call. Production leaves both unset.
export ICON_RETAILER_ALLOW_NETWORKS="${ICON_RETAILER_ALLOW_NETWORKS:-127.0.0.0/8,::1/128}"
export ICON_RETAILER_ALLOW_HTTP="${ICON_RETAILER_ALLOW_HTTP:-true}"
export ICON_SIM_ADDR="${ICON_SIM_ADDR:-127.0.0.1:8090}"
# Push and e-mail go to the simulator's fake FCM (with its OAuth2 token endpoint) and its SMTP
# sink. The demo service account's token_uri is http://127.0.0.1:8090/oauth2/token.
export ICON_FCM_CREDENTIALS="${ICON_FCM_CREDENTIALS:-deploy/demo/fcm-demo-service-account.json}"
export ICON_FCM_ENDPOINT="${ICON_FCM_ENDPOINT:-http://127.0.0.1:8090}"
export ICON_SIM_SMTP_ADDR="${ICON_SIM_SMTP_ADDR:-127.0.0.1:2525}"
export ICON_SMTP_URL="${ICON_SMTP_URL:-smtp://127.0.0.1:2525}"
export ICON_LOG="${ICON_LOG:-info}"

pids=()
start() { # name binary
  if [ -n "${ICON_RUN_LOG_DIR:-}" ]; then
    # One file per service, written by the service itself: no process per line of output
    # (what scripts/bench.sh uses, so the pipe's CPU is not in the figures).
    mkdir -p "$ICON_RUN_LOG_DIR"
    "$bin/$2" >"$ICON_RUN_LOG_DIR/$1.log" 2>&1 &
  else
    # Each line prefixed with the service's name, flushed line by line. (Not `sed -u`: it reads
    # one byte per system call, and under load cost a tenth of the machine.)
    "$bin/$2" > >(awk -v p="[$1] " '{ print p $0; fflush() }') 2>&1 &
  fi
  pids+=("$!")
}
stop() {
  trap - INT TERM EXIT
  say "run: stopping"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

start sim icon-retailer-sim
start gateway icon-gateway
# ICON_RUN_WORKERS and ICON_RUN_NOTIFIERS (default 1) start that many of each, sharing the work.
for i in $(seq 1 "${ICON_RUN_WORKERS:-1}"); do start "worker$([ "$i" = 1 ] || echo "-$i")" icon-checkout-worker; done
for i in $(seq 1 "${ICON_RUN_NOTIFIERS:-1}"); do start "notifier$([ "$i" = 1 ] || echo "-$i")" icon-notifier; done
say "run: gateway http://127.0.0.1:8080 (docs at /docs), simulator http://127.0.0.1:8090 (FCM messages at /fcm/messages, mail at /mail); Ctrl-C stops all"
# Stop everything as soon as one of them exits.
wait -n "${pids[@]}" || true
