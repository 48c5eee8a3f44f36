#!/usr/bin/env bash
# Measures ICON on this machine as docs/performance.md does: builds release binaries, starts the
# whole system (scripts/run.sh settings) on a fresh database `icon_bench` and a fresh RabbitMQ
# vhost `icon-bench`, runs icon-bench with the arguments given, prints PostgreSQL's statements
# per checkout (when pg_stat_statements is loaded), and stops everything.
#
#   scripts/bench.sh --scenario steady --rate 20 --duration 60s
#   scripts/bench.sh --scenario max --concurrency 64 --duration 60s --json max.json --html max.html
#   BENCH_WORKERS=2 BENCH_NOTIFIERS=2 scripts/bench.sh --scenario max --concurrency 64
#   scripts/bench.sh --scenario steady --rate 20 --duration 30s --stages --html stages.html
#
# BENCH_WORKERS and BENCH_NOTIFIERS (default 1) run that many checkout workers and notifiers on
# the one broker and database (scripts/run.sh's ICON_RUN_WORKERS and ICON_RUN_NOTIFIERS);
# BENCH_BUILD=0 uses the binaries already in target/release. Before the run it prints each
# service's resident memory at idle.
#
# With --stages (or --otlp-listen ADDR) among the arguments, the services are started with
# ICON_OTLP_ENDPOINT=http://ADDR (default 127.0.0.1:4318), icon-bench's span collector, so that
# icon-bench can break each checkout's time into stages; the port must be fixed and free.
#
# Needs PostgreSQL and RabbitMQ on 127.0.0.1 with `psql` and `rabbitmqctl` (as on ICON's
# development machines). Against docker compose, run icon-bench itself (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if ! local_services || ! command -v rabbitmqctl >/dev/null 2>&1; then
  say "bench: needs PostgreSQL and RabbitMQ on 127.0.0.1 with psql and rabbitmqctl"
  exit 1
fi

if [ "${BENCH_BUILD:-1}" != 0 ]; then
  say "bench: building release binaries"
  cargo build --release --locked --bins
fi

db=icon_bench
vhost=icon-bench
say "bench: fresh database $db and vhost $vhost"
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'

export ICON_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export ICON_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
export ICON_RUN_PROFILE=release ICON_RUN_BUILD=0
# A fresh database, so a fresh key to seal its webhook secrets.
export ICON_SECRETS_KEY="${ICON_SECRETS_KEY:-$(random_key)}"
export ICON_RUN_WORKERS="${BENCH_WORKERS:-1}" ICON_RUN_NOTIFIERS="${BENCH_NOTIFIERS:-1}"
# The same secret for the services (run.sh) and the tool that mints their tokens.
export ICON_JWT_SECRET="${ICON_JWT_SECRET:-demo-secret-for-local-runs-only-change-me}"
# The limiter stays on, so its cost is measured, but far above the ~1,000 requests/s the
# benchmark sends from this one address.
export ICON_RATE_LIMIT="${ICON_RATE_LIMIT:-100000/s burst 100000}"
if reachable 8080 || reachable 8090; then
  say "bench: something already listens on 127.0.0.1:8080 or :8090; stop it first"
  exit 1
fi
# --stages / --otlp-listen: the services must know the collector's address before they start.
otlp_listen="" prev=""
for arg in "$@"; do
  [ "$prev" != --otlp-listen ] || otlp_listen="$arg"
  case "$arg" in
    --stages) otlp_listen="${otlp_listen:-127.0.0.1:4318}" ;;
    --otlp-listen=*) otlp_listen="${arg#--otlp-listen=}" ;;
  esac
  prev="$arg"
done
if [ -n "$otlp_listen" ]; then
  port="${otlp_listen##*:}"
  if [ "$port" = 0 ] || [ "$port" = "$otlp_listen" ]; then
    say "bench: --otlp-listen needs a fixed port here ($otlp_listen): the services are told it before icon-bench starts"
    exit 1
  fi
  if reachable "$port"; then
    say "bench: something already listens on 127.0.0.1:$port, the span collector's port; stop it or pass --otlp-listen"
    exit 1
  fi
  export ICON_OTLP_ENDPOINT="http://$otlp_listen"
  say "bench: the services export spans to $ICON_OTLP_ENDPOINT (icon-bench --stages)"
fi
log=target/bench-system.log
# Each service logs to its own file, with no pipe per line to prefix it (issue 19): the pipe's
# CPU would count against the machine ICON is measured on. BENCH_LOG_PIPE=1 keeps run.sh's pipe.
if [ "${BENCH_LOG_PIPE:-0}" != 1 ]; then
  export ICON_RUN_LOG_DIR="${ICON_RUN_LOG_DIR:-target/bench-logs}"
fi
scripts/run.sh >"$log" 2>&1 &
system=$!
# SIGTERM, not SIGINT: a background job of a script ignores SIGINT.
stop_system() {
  kill -TERM "$system" 2>/dev/null || true
  wait "$system" 2>/dev/null || true
  for _ in $(seq 1 30); do
    if ! reachable 8080 && ! reachable 8090; then return; fi
    sleep 0.5
  done
  say "bench: the system did not stop within 15 s"
}
trap stop_system EXIT

where="log in $log"
[ -z "${ICON_RUN_LOG_DIR:-}" ] || where="$where, each service in $ICON_RUN_LOG_DIR/<name>.log"
say "bench: waiting for the gateway to be ready ($where)"
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null; then break; fi
  sleep 0.5
done
curl -fsS -o /dev/null http://127.0.0.1:8080/readyz || {
  say "bench: gateway not ready"
  tail -20 "$log" ${ICON_RUN_LOG_DIR:+"$ICON_RUN_LOG_DIR"/gateway.log}
  exit 1
}

if [ "${BENCH_WORKERS:-1}" != 1 ] || [ "${BENCH_NOTIFIERS:-1}" != 1 ]; then
  say "bench: ${BENCH_WORKERS:-1} worker(s), ${BENCH_NOTIFIERS:-1} notifier(s)"
fi

sleep 2
say "bench: resident memory at idle (VmRSS)"
for name in icon-gateway icon-checkout-worker icon-notifier; do
  for pid in $(pgrep -f "target/release/$name\b"); do
    printf '  %-22s pid %-7s %s\n' "$name" "$pid" "$(grep VmRSS /proc/"$pid"/status | tr -s ' ' | cut -d' ' -f2-)"
  done
done

statements=false
if psql -At -h 127.0.0.1 -U postgres -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 \
  && psql -At -h 127.0.0.1 -U postgres -d "$db" -c "SELECT pg_stat_statements_reset()" >/dev/null 2>&1; then
  statements=true
fi

target/release/icon-bench --database-url "$ICON_DATABASE_URL" "$@"

if $statements; then
  say "bench: PostgreSQL statements of database $db, per call and in all (pg_stat_statements)"
  psql -h 127.0.0.1 -U postgres -d "$db" -P pager=off -c "
    SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
           round((total_exec_time / greatest(calls, 1))::numeric, 3) AS ms_per_call,
           left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$db')
    ORDER BY calls DESC LIMIT 40"
fi
