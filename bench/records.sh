#!/usr/bin/env bash
# Records: create and list on harmar against the same API written in Hono with the npm pg client,
# both on one PostgreSQL (fsync off) on this machine, same load in one run: wrk on loopback,
# CONNS keep-alive connections, DURATION per phase, ROUNDS alternating rounds (medians).
#   create: POST /v1/collections/notes/records, a new record per request (bench/records/post.lua)
#   list:   GET  /v1/collections/notes/records?limit=50, the first page of what the creates made
#           (harmar twice: as it runs, answering this hot page from its list cache between writes,
#           and a second harmar on the same database with the list cache off; Hono has no cache)
# The collection is {title text required, done bool, owner text}, indexed on owner, its create
# and list rules "" (anyone): no auth on either side. Both use WORKERS cores (harmar --workers,
# Node one cluster worker each). PocketBase's own published figure is printed as the reference.
# Needs: build/release/harmar (cmake --preset release && cmake --build --preset release) and
# scripts/install-deps.sh (wrk, PostgreSQL, bench/records/node_modules).
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-500}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
NODE_POOL=${NODE_POOL:-10}  # pg connections per Node worker (the pg.Pool default)
BENCH_DIR="$ROOT/bench/records"
POCKETBASE_CREATES=1800  # creates/s at 500 concurrency on 2 vCPU, PocketBase's published benchmark
[[ -d $BENCH_DIR/node_modules/hono ]] || { echo "bench: run scripts/install-deps.sh first (npm hono, pg)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

"$ROOT/scripts/test-services.sh" start "$WORK/services" >/dev/null
stop_services() { "$ROOT/scripts/test-services.sh" stop "$WORK/services" >/dev/null 2>&1 || true; }
trap 'stop_services; cleanup' EXIT
# shellcheck disable=SC1091
source "$WORK/services/env"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# harmar on its own PostgreSQL schema, with the collection defined by an admin.
schema="bench_$RANDOM$RANDOM"
psql "$HARMAR_TEST_PG_URL" -q -c "CREATE SCHEMA $schema" >/dev/null
hdb="$HARMAR_TEST_PG_URL?options=-csearch_path%3D$schema"
hport=$(free_port)
"$HARMAR" serve --listen "127.0.0.1:$hport" --workers "$WORKERS" --data-dir "$WORK/data" --db "$hdb" \
  --set log.access=false --set log.level=warn --set limits.connection_rps=0 >"$WORK/harmar.log" 2>&1 &
hpid=$!; PIDS+=("$hpid")
wait_http "http://127.0.0.1:$hport/readyz"
uport=$(free_port)  # the same, without its list cache, for the uncached list figure
"$HARMAR" serve --listen "127.0.0.1:$uport" --workers "$WORKERS" --data-dir "$WORK/data-uncached" --db "$hdb" \
  --set log.access=false --set log.level=warn --set limits.connection_rps=0 --set data.list_cache=false \
  >"$WORK/harmar-uncached.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$uport/readyz"
"$HARMAR" admin create-user --data-dir "$WORK/data" --db "$hdb" --email admin@example.com \
  --password "bench records password 42" --role admin --log-level warn >/dev/null
token=$(curl -fsS -X POST "http://127.0.0.1:$hport/v1/auth/login" -H 'Content-Type: application/json' \
  -d '{"email":"admin@example.com","password":"bench records password 42"}' | json '["access_token"]')
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$hport/v1/collections" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name":"notes","type":"table",
  "fields":[{"name":"title","type":"text","required":true},{"name":"done","type":"bool"},{"name":"owner","type":"text"}],
  "indexes":[["owner"]],"rules":{"list":"","view":"","create":""}}'

# The Hono peer on the same PostgreSQL (its own table).
nport=$(free_port)
node "$BENCH_DIR/hono.mjs" "$HARMAR_TEST_PG_URL" "$nport" "$WORKERS" "$NODE_POOL" >"$WORK/hono.log" 2>&1 &
npid=$!; PIDS+=("$npid")
wait_http "http://127.0.0.1:$nport/v1/collections/notes/records"

path=/v1/collections/notes/records
# Both answer a create and a list with the same shape.
for p in "$hport" "$nport"; do
  rec=$(curl -fsS -X POST "http://127.0.0.1:$p$path" -H 'Content-Type: application/json' \
    -d '{"title":"first","done":true,"owner":"bench"}')
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert {"id","title","done","owner","created_at","updated_at","version"} <= set(d), d' "$rec"
  curl -fsS "http://127.0.0.1:$p$path?limit=50" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["items"] and "next_cursor" in d, d'
done

# wrk prints "N requests in T.TTs" and, when some were answered with an error, "Non-2xx or 3xx
# responses: N"; only answers that succeeded count.
# responses: N"; only answers that succeeded count. With --latency it also prints the 50% and 99%
# latencies (in us, ms or s).
run_wrk() {  # run_wrk URL [wrk args...] -> "successes_per_s failures p50_ms p99_ms"
  local url=$1; shift
  wrk -t2 -c"$CONNS" -d"$DURATION" --timeout 10s --latency "$@" "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; return v * 1000 }
    / requests in / {n = $1; t = $4; sub(/s,?$/, "", t)}
    /Non-2xx/ {bad = $NF}
    $1 == "50%" {p50 = ms($2)}
    $1 == "99%" {p99 = ms($2)}
    END {printf "%.1f %d %.1f %.1f\n", (n - bad) / t, bad + 0, p50, p99}'
}

: >"$WORK/hc.txt"; : >"$WORK/nc.txt"; : >"$WORK/hl.txt"; : >"$WORK/ul.txt"; : >"$WORK/nl.txt"
for r in $(seq 1 "$ROUNDS"); do
  run_wrk "http://127.0.0.1:$hport$path" -s "$BENCH_DIR/post.lua" >>"$WORK/hc.txt"
  run_wrk "http://127.0.0.1:$nport$path" -s "$BENCH_DIR/post.lua" >>"$WORK/nc.txt"
  run_wrk "http://127.0.0.1:$hport$path?limit=50" >>"$WORK/hl.txt"
  run_wrk "http://127.0.0.1:$uport$path?limit=50" >>"$WORK/ul.txt"
  run_wrk "http://127.0.0.1:$nport$path?limit=50" >>"$WORK/nl.txt"
done
failed=$(cat "$WORK"/{hc,nc,hl,ul,nl}.txt | awk '{s += $2} END {print s+0}')
col() { awk -v c="$2" '{print $c}' "$WORK/$1.txt" | median; }  # col FILE COLUMN: the median over rounds
hc=$(col hc 1); nc=$(col nc 1); hl=$(col hl 1); ul=$(col ul 1); nl=$(col nl 1)
hrows=$(psql "$hdb" -tA -c "SELECT COUNT(*) FROM $(psql "$hdb" -tA -c "SELECT table_name FROM information_schema.tables WHERE table_schema = '$schema' AND table_name LIKE '%notes%' LIMIT 1")")
nrows=$(psql "$HARMAR_TEST_PG_URL" -tA -c "SELECT COUNT(*) FROM hono_notes")

printf '\nrecords on PostgreSQL, %s connections, %s per run, %s workers each, median of %s rounds\n' \
  "$CONNS" "$DURATION" "$WORKERS" "$ROUNDS"
printf '%-34s %12s %16s %12s %14s %14s\n' "" "creates/s" "create p50/p99" "list req/s" "list uncached" "rows created"
printf '%-34s %12.0f %16s %12.0f %14.0f %14s\n' "harmar (PostgreSQL)" "$hc" "$(col hc 3)/$(col hc 4) ms" "$hl" "$ul" "$hrows"
printf '%-34s %12.0f %16s %12.0f %14.0f %14s\n' "Hono $(node -p "require('$BENCH_DIR/node_modules/hono/package.json').version") + pg $(node -p "require('$BENCH_DIR/node_modules/pg/package.json').version")" "$nc" "$(col nc 3)/$(col nc 4) ms" "$nl" "$nl" "$nrows"
printf '%-34s %12s %16s %12s %14s\n' "ratio harmar / Hono (goal >= 5)" "$(ratio "$hc" "$nc")" "" "$(ratio "$hl" "$nl")" "$(ratio "$ul" "$nl")"
printf '%-34s %12s\n' "PocketBase, published (2 vCPU)" "$POCKETBASE_CREATES"
printf '%-34s %12s\n' "ratio harmar / PocketBase" "$(ratio "$hc" "$POCKETBASE_CREATES")"
printf 'list p50/p99: harmar %s/%s ms, uncached %s/%s ms, Hono %s/%s ms; load average %s\n' "$(col hl 3)" "$(col hl 4)" \
  "$(col ul 3)" "$(col ul 4)" "$(col nl 3)" "$(col nl 4)" "$(cut -d' ' -f1-3 /proc/loadavg)"
((failed == 0)) || echo "bench: $failed requests were answered with an error status (not counted above)" >&2
