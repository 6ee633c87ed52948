#!/usr/bin/env bash
# The task queue against BullMQ: create → claim → complete of JOBS echo tasks with 4 workers.
#   harmar on SQLite and on PostgreSQL: tasks created with POST /v1/tasks, claimed in batches
#     through the agent's long-poll (POST /v1/daemon/tasks/pending) and completed one by one
#     (POST /v1/daemon/tasks/{id}/result), all over HTTP/1.1 keep-alive;
#   BullMQ on Redis: the same jobs added one by one, 4 Workers returning the job's data.
# Producers and workers run in one Node process per system, on this machine, one after another.
# Prints jobs/s for each (median of ROUNDS) and the ratios to BullMQ.
# Needs: make build (build/release/harmar) and scripts/install-deps.sh (bench/queue/node_modules).
source "$(dirname "$0")/lib.sh"
JOBS=${JOBS:-100000}
ROUNDS=${ROUNDS:-1}
PRODUCERS=${PRODUCERS:-32}
BATCH=${BATCH:-64}
CONCURRENCY=${CONCURRENCY:-16}  # per BullMQ worker: jobs in flight, as BATCH is for ours
WORKERS=${WORKERS:-2}
BENCH_DIR="$ROOT/bench/queue"
[[ -d $BENCH_DIR/node_modules/bullmq ]] || { echo "bench: run scripts/install-deps.sh first (npm bullmq)" >&2; exit 1; }

# PostgreSQL and Redis, each on a free port (fsync off, no Redis persistence: neither side pays
# for durability to disk here; SQLite runs as harmar ships it, WAL with synchronous=NORMAL).
"$ROOT/scripts/test-services.sh" start "$WORK/services" >/dev/null
stop_services() { "$ROOT/scripts/test-services.sh" stop "$WORK/services" >/dev/null 2>&1 || true; }
trap 'stop_services; cleanup' EXIT
# shellcheck disable=SC1091
source "$WORK/services/env"

run_harmar() {  # run_harmar LABEL [serve args...] -> "jobs_per_s elapsed_s"
  local label=$1; shift
  local port; port=$(free_port)
  "$HARMAR" serve --listen "127.0.0.1:$port" --workers "$WORKERS" --data-dir "$WORK/data-$label-$RANDOM" \
    --set log.access=false --set log.level=warn --set limits.connection_rps=0 "$@" >"$WORK/harmar-$label.log" 2>&1 &
  local pid=$!
  wait_http "http://127.0.0.1:$port/readyz"
  local token keys=()
  token=$(curl -fsS -X POST "http://127.0.0.1:$port/v1/auth/register" -H 'Content-Type: application/json' \
    -d "{\"email\":\"bench$RANDOM@example.com\",\"password\":\"bench queue password 42\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  for i in 1 2 3 4; do
    keys+=("\"$(curl -fsS -X POST "http://127.0.0.1:$port/v1/daemon/register" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -d "{\"name\":\"worker$i\"}" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')\"")
  done
  local list; list="[$(IFS=,; echo "${keys[*]}")]"
  node "$BENCH_DIR/harmar.mjs" "http://127.0.0.1:$port" "$token" "$list" "$JOBS" "$PRODUCERS" "$BATCH"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

: >"$WORK/sqlite.txt"; : >"$WORK/pg.txt"; : >"$WORK/bull.txt"
for r in $(seq 1 "$ROUNDS"); do
  run_harmar sqlite >>"$WORK/sqlite.txt"
  schema="bench_$RANDOM$RANDOM"
  psql "$HARMAR_TEST_PG_URL" -q -c "CREATE SCHEMA $schema" >/dev/null
  run_harmar pg --db "$HARMAR_TEST_PG_URL?options=-csearch_path%3D$schema" >>"$WORK/pg.txt"
  (cd "$BENCH_DIR" && node bullmq.mjs "$HARMAR_TEST_REDIS_URL" "$JOBS" "$PRODUCERS" "$CONCURRENCY") >>"$WORK/bull.txt"
done
s=$(awk '{print $1}' "$WORK/sqlite.txt" | median)
p=$(awk '{print $1}' "$WORK/pg.txt" | median)
b=$(awk '{print $1}' "$WORK/bull.txt" | median)

printf '\ncreate → claim → complete, %s echo tasks, 4 workers, %s producers, %s harmar workers, median of %s\n' \
  "$JOBS" "$PRODUCERS" "$WORKERS" "$ROUNDS"
printf '%-28s %12s %10s\n' "" "jobs/s" "vs BullMQ"
printf '%-28s %12.0f %10s\n' "harmar (SQLite)" "$s" "$(ratio "$s" "$b")"
printf '%-28s %12.0f %10s\n' "harmar (PostgreSQL)" "$p" "$(ratio "$p" "$b")"
printf '%-28s %12.0f %10s\n' "BullMQ $(node -p "require('$BENCH_DIR/node_modules/bullmq/package.json').version") (Redis)" "$b" "1.00"
