#!/usr/bin/env bash
# Realtime (/v1/ws) under load, against Socket.IO (one Node process), on this machine, loopback.
#   (a) idle: IDLE_CONNS WebSockets, each authenticated and subscribed to its user's `user`
#       channel, idle for two seconds: server RSS per connection (RSS delta / connections), for
#       harmar serve and for Socket.IO holding the same number of clients.
#   (b) fan-out: FANOUT_CONNS sockets of one user (the reader), all subscribed to
#       `conversation:{id}` of a group conversation with a second user (the sender), who sends
#       messages with POST /v1/conversations/{id}/messages: stored, then pushed as message.new
#       (the chat case of docs/realtime.md; the IM module's membership filter runs per socket).
#       Socket.IO gets the same number of clients and io.emit()s each body POSTed to it (it stores
#       nothing). First LATENCY_MSGS messages one at a time: p50/p99 of POST sent → frame
#       received, over every delivery. Then BURST messages from SENDERS connections at once
#       (a busy room): deliveries per second until every socket has every message, and the
#       server's CPU time per delivery meanwhile (what a shared, noisy machine distorts least).
#       Medians of ROUNDS alternating rounds; the goal is ≥ 5× Socket.IO's deliveries per second.
#   (c) the most connections harmar holds, going for MAX_CONNS: several ws_load processes, their
#       sources spread over 127.0.0.2.. (one source address has ~28k ephemeral ports per
#       destination), until the server stops taking them. What limited it is printed.
# The load client is bench/ws_load.cpp (C++, one client for both servers).
# Needs: make build (build/release/harmar, ws_load) and scripts/install-deps.sh (bench/ws/node_modules).
source "$(dirname "$0")/lib.sh"
WORKERS=${WORKERS:-2}
IDLE_CONNS=${IDLE_CONNS:-10000}
FANOUT_CONNS=${FANOUT_CONNS:-10000}
LATENCY_MSGS=${LATENCY_MSGS:-20}
BURST=${BURST:-50}
SENDERS=${SENDERS:-8}
ROUNDS=${ROUNDS:-3}
MAX_CONNS=${MAX_CONNS:-100000}
CLIENT_THREADS=${CLIENT_THREADS:-1}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.17}
WS_LOAD=${WS_LOAD:-$(dirname "$HARMAR")/bench/ws_load}
BENCH_DIR="$ROOT/bench/ws"
[[ -x $WS_LOAD ]] || { echo "bench: $WS_LOAD is missing: run 'make build' first" >&2; exit 1; }
[[ -d $BENCH_DIR/node_modules/socket.io ]] || { echo "bench: run scripts/install-deps.sh first (npm socket.io)" >&2; exit 1; }

# Descriptors: as many as this shell may have (raising the hard limit needs CAP_SYS_RESOURCE).
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
want=$((MAX_CONNS + 1024))
ulimit -n "$(( want < hard ? want : hard ))"
FDS=$(ulimit -n)

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

# --- harmar, two users, one group conversation --------------------------------------------------
hport=$(free_port)
"$HARMAR" serve --listen 127.0.0.1:$hport --workers "$WORKERS" --data-dir "$WORK/data" \
  --set log.access=false --set log.level=warn --set limits.connection_rps=0 >"$WORK/harmar.log" 2>&1 &
hpid=$!; PIDS+=("$hpid")
wait_http "http://127.0.0.1:$hport/readyz"
register() {  # register NAME -> "user_id access_token"
  curl -fsS -X POST "http://127.0.0.1:$hport/v1/auth/register" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$1$RANDOM@example.com\",\"password\":\"bench ws password 42\",\"name\":\"$1\"}" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["user"]["id"], d["access_token"])'
}
read -r _ sender_token < <(register sender)
read -r reader_id reader_token < <(register reader)
conv=$(curl -fsS -X POST "http://127.0.0.1:$hport/v1/conversations" -H "Authorization: Bearer $sender_token" \
  -H 'Content-Type: application/json' -d "{\"type\":\"group\",\"member_ids\":[\"$reader_id\"],\"title\":\"bench\"}" |
  json_field '["conversation"]["id"]')

# --- Socket.IO ----------------------------------------------------------------------------------
(cd "$BENCH_DIR" && exec node socketio_server.js 0 "$WORK/sio.port") >"$WORK/sio.log" 2>&1 &
spid=$!; PIDS+=("$spid")
for _ in $(seq 1 200); do [[ -s $WORK/sio.port ]] && break; sleep 0.05; done
sport=$(cat "$WORK/sio.port")
sio_version=$(node -p "require('$BENCH_DIR/node_modules/socket.io/package.json').version")

# --- (a) idle connections -----------------------------------------------------------------------
hold() {  # hold PROTO PORT COUNT PID -> "opened rss_before_kib rss_held_kib"
  local before ready="$WORK/held.$RANDOM" holder opened
  before=$(rss_kb "$4")
  "$WS_LOAD" hold --proto "$1" --port "$2" --count "$3" --token "$reader_token" --channel user \
    --sources "$SOURCES" --ready "$ready" --open-timeout 20 2>>"$WORK/ws_load.log" &
  holder=$!
  for _ in $(seq 1 2400); do [[ -s $ready ]] && break; kill -0 $holder 2>/dev/null || break; sleep 0.05; done
  opened=$(cat "$ready" 2>/dev/null || echo 0)
  sleep 2  # idle for two seconds, as after a burst of traffic
  echo "$opened $before $(rss_kb "$4")"
  kill $holder 2>/dev/null; wait $holder 2>/dev/null || true
}
read -r h_open h_before h_held < <(hold harmar "$hport" "$IDLE_CONNS" "$hpid")
read -r s_open s_before s_held < <(hold socketio "$sport" "$IDLE_CONNS" "$spid")
per_conn() { awk -v a="$2" -v b="$1" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / n; else print 0 }'; }
h_per=$(per_conn "$h_before" "$h_held" "$h_open")
s_per=$(per_conn "$s_before" "$s_held" "$s_open")
sleep 2  # let both servers see the holders' sockets close

# --- (b) fan-out --------------------------------------------------------------------------------
fanout() {  # fanout PROTO [ws_load args...] -> one JSON line
  local proto=$1; shift
  "$WS_LOAD" fanout --proto "$proto" --count "$FANOUT_CONNS" --sources "$SOURCES" --threads "$CLIENT_THREADS" \
    --latency-msgs "$LATENCY_MSGS" --burst "$BURST" --senders "$SENDERS" --timeout 60 "$@" 2>>"$WORK/ws_load.log"
}
: >"$WORK/h.json"; : >"$WORK/s.json"
for r in $(seq 1 "$ROUNDS"); do
  fanout harmar --port "$hport" --server-pid "$hpid" --token "$reader_token" --channel "conversation:$conv" \
    --send-path "/v1/conversations/$conv/messages" --send-token "$sender_token" >>"$WORK/h.json" || true
  sleep 1
  fanout socketio --port "$sport" --server-pid "$spid" --send-path /send >>"$WORK/s.json" || true
  sleep 1
done
field() {  # field FILE KEY: one value per round
  python3 -c "import json,sys
for l in open(sys.argv[1]):
  l = l.strip()
  if l: print(json.loads(l)[sys.argv[2]])" "$1" "$2"
}
# A round counts only if every socket got every message: a lossy round is reported, not medianed.
complete() {
  python3 -c "import json,sys
bad = 0
for l in open(sys.argv[1]):
  l = l.strip()
  if not l: continue
  d = json.loads(l)
  if not d['ok'] or d['connections'] < int(sys.argv[2]) or d['burst_deliveries'] < d['burst_expected'] \
     or d['latency_deliveries'] < d['latency_expected']:
    bad += 1
print(bad)" "$1" "$FANOUT_CONNS"
}
h_bad=$(complete "$WORK/h.json"); s_bad=$(complete "$WORK/s.json")
h_rate=$(field "$WORK/h.json" deliveries_per_s | median); s_rate=$(field "$WORK/s.json" deliveries_per_s | median)
h_p50=$(field "$WORK/h.json" p50_ms | median); s_p50=$(field "$WORK/s.json" p50_ms | median)
h_p99=$(field "$WORK/h.json" p99_ms | median); s_p99=$(field "$WORK/s.json" p99_ms | median)
h_bp99=$(field "$WORK/h.json" burst_p99_ms | median); s_bp99=$(field "$WORK/s.json" burst_p99_ms | median)
h_cpu=$(field "$WORK/h.json" server_cpu_us_per_delivery | median); s_cpu=$(field "$WORK/s.json" server_cpu_us_per_delivery | median)
for v in h_cpu s_cpu h_rate s_rate h_p50 s_p50 h_p99 s_p99 h_bp99 s_bp99; do [[ -n ${!v} ]] || printf -v "$v" 0; done

# --- (c) the most connections -------------------------------------------------------------------
# Stopped Socket.IO first: this part is harmar's alone.
kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
h_base=$(rss_kb "$hpid")
per_proc=$(( FDS - 256 < 25000 ? FDS - 256 : 25000 ))
procs=$(( (MAX_CONNS + per_proc - 1) / per_proc ))
holders=(); left=$MAX_CONNS
for i in $(seq 1 "$procs"); do
  n=$(( left < per_proc ? left : per_proc )); left=$((left - n))
  "$WS_LOAD" hold --proto harmar --port "$hport" --count "$n" --token "$reader_token" --channel user \
    --sources "$SOURCES" --ready "$WORK/max.$i" --open-timeout 10 --stop-after-failures 200 2>>"$WORK/ws_load_max.log" &
  holders+=($!); PIDS+=($!)
done
for _ in $(seq 1 3600); do  # at most 3 minutes
  done_n=0
  for i in $(seq 1 "$procs"); do
    [[ -s $WORK/max.$i ]] || ! kill -0 "${holders[$((i - 1))]}" 2>/dev/null && done_n=$((done_n + 1))
  done
  (( done_n == procs )) && break
  sleep 0.05
done
reached=0
for i in $(seq 1 "$procs"); do reached=$((reached + $(cat "$WORK/max.$i" 2>/dev/null || echo 0))); done
sleep 2
h_max_rss=$(rss_kb "$hpid")
server_fds=$(awk '/Max open files/ {print $4}' "/proc/$hpid/limits")
server_open=$(find "/proc/$hpid/fd" -mindepth 1 -maxdepth 1 | wc -l)
for p in "${holders[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${holders[@]}"; do wait "$p" 2>/dev/null || true; done
limit="reached the target"
if (( reached < MAX_CONNS )); then
  if (( server_open + 16 >= server_fds )); then
    limit="harmar's descriptors: $server_open open of RLIMIT_NOFILE $server_fds (the hard limit here; raising it needs CAP_SYS_RESOURCE)"
  elif grep -q "accept failed" "$WORK/harmar.log"; then
    limit="harmar: $(grep -o '"error":"[^"]*"' "$WORK/harmar.log" | sort | uniq -c | sort -rn | head -1)"
  else
    limit="the clients: $(grep -v '^ws_load: [0-9]* of' "$WORK/ws_load_max.log" | sort | uniq -c | sort -rn | head -1)"
  fi
fi

printf '\n/v1/ws against Socket.IO %s (one Node process); harmar %s workers; loopback; %s\n' \
  "$sio_version" "$WORKERS" "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
printf '%-34s %14s %14s %10s\n' "" "harmar" "Socket.IO" "ratio"
printf '%-34s %14s %14s %10s\n' "(a) idle connections held" "$h_open" "$s_open" ""
printf '%-34s %14s %14s %10s\n' "    RSS before (KiB)" "$h_before" "$s_before" ""
printf '%-34s %14s %14s %10s\n' "    RSS with them (KiB)" "$h_held" "$s_held" ""
printf '%-34s %14s %14s %10s\n' "    KiB per idle connection" "$h_per" "$s_per" "$(ratio "$h_per" "$s_per")"
printf '%-34s %14s %14s %10s\n' "(b) fan-out to $FANOUT_CONNS, median of $ROUNDS" "" "" ""
printf '%-34s %14.0f %14.0f %10s\n' "    deliveries/s (burst of $BURST)" "$h_rate" "$s_rate" "$(ratio "$h_rate" "$s_rate")"
printf '%-34s %14.2f %14.2f %10s\n' "    server CPU us per delivery" "$h_cpu" "$s_cpu" "$(ratio "$h_cpu" "$s_cpu")"
printf '%-34s %14.2f %14.2f %10s\n' "    p50 delivery ms (1 at a time)" "$h_p50" "$s_p50" "$(ratio "$h_p50" "$s_p50")"
printf '%-34s %14.2f %14.2f %10s\n' "    p99 delivery ms (1 at a time)" "$h_p99" "$s_p99" "$(ratio "$h_p99" "$s_p99")"
printf '%-34s %14.2f %14.2f %10s\n' "    p99 delivery ms (in the burst)" "$h_bp99" "$s_bp99" "$(ratio "$h_bp99" "$s_bp99")"
printf '%-34s %14s %14s %10s\n' "    rounds with a lost delivery" "$h_bad" "$s_bad" ""
printf '%-34s %14s\n' "(c) most connections (of $MAX_CONNS)" "$reached"
printf '%-34s %14s %14s\n' "    RSS with them (KiB), per conn" "$h_max_rss" \
  "$(per_conn "$h_base" "$h_max_rss" "$reached")"
printf '    limited by: %s\n' "$limit"
