#!/usr/bin/env bash
# harmar serve answering GET /v1/version against nginx returning the same bytes from `return 200`,
# same worker count, wrk on loopback, keep-alive, 64 connections. Prints RPS and p99 for each and
# the ratio (medians of ROUNDS alternating runs), then RSS at idle and with 10 000 idle
# keep-alive connections.
source "$(dirname "$0")/lib.sh"
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
ulimit -n 65536 2>/dev/null || true

hport=$(free_port)
"$HARMAR" serve --listen 127.0.0.1:$hport --workers "$WORKERS" --data-dir "$WORK/data" \
  --set log.access=false --set log.level=warn --set limits.connection_rps=0 >"$WORK/harmar.log" 2>&1 &
hpid=$!; PIDS+=("$hpid")
wait_http "http://127.0.0.1:$hport/v1/version"
body=$(curl -fsS "http://127.0.0.1:$hport/v1/version")

nport=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes $WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:$nport reuseport;
    location = /v1/version { default_type application/json; return 200 '$body'; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
npid=$!; PIDS+=("$npid")
wait_http "http://127.0.0.1:$nport/v1/version"
[[ $(curl -fsS "http://127.0.0.1:$nport/v1/version") == "$body" ]] || { echo "bench: nginx body differs" >&2; exit 1; }

# CPU ticks (user + system) of a process and its children: the server's cost, whatever wrk and
# the scheduler do to the request rate on a shared 2-core machine.
cpu_ticks() {
  local t=0 p tid
  for p in $1 $(pgrep -P "$1" || true); do
    for tid in /proc/$p/task/*; do
      read -r -a f <"$tid/stat" || continue
      t=$((t + f[13] + f[14]))
    done
  done
  echo "$t"
}

# wrk prints "N requests in", "Requests/sec: N" and, with --latency, the 99% line.
run_wrk() {  # run_wrk URL PID -> "rps p99_ms cpu_us_per_request"
  local out c0 c1
  c0=$(cpu_ticks "$2")
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$1")
  c1=$(cpu_ticks "$2")
  local rps p99 reqs hz
  hz=$(getconf CLK_TCK)
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $p99 $(awk -v c=$((c1 - c0)) -v r="$reqs" -v hz="$hz" 'BEGIN {printf "%.2f", c * 1e6 / hz / r}')"
}

wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$hport/v1/version" >/dev/null  # warm up both
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$nport/v1/version" >/dev/null
: >"$WORK/h.txt"; : >"$WORK/n.txt"
for r in $(seq 1 "$ROUNDS"); do
  run_wrk "http://127.0.0.1:$hport/v1/version" "$hpid" >>"$WORK/h.txt"
  run_wrk "http://127.0.0.1:$nport/v1/version" "$npid" >>"$WORK/n.txt"
done
h_rps=$(awk '{print $1}' "$WORK/h.txt" | median); h_p99=$(awk '{print $2}' "$WORK/h.txt" | median)
n_rps=$(awk '{print $1}' "$WORK/n.txt" | median); n_p99=$(awk '{print $2}' "$WORK/n.txt" | median)
h_cpu=$(awk '{print $3}' "$WORK/h.txt" | median); n_cpu=$(awk '{print $3}' "$WORK/n.txt" | median)

# Memory: idle, then with IDLE_CONNS keep-alive connections that each made one request and then
# stayed idle for two seconds.
h_idle=$(rss_kb "$hpid"); n_idle=$(tree_rss_kb "$npid")
hold() {  # hold PORT PIDFN: opens the connections, reports RSS, closes them
  python3 "$(dirname "$0")/hold_connections.py" "$1" "$IDLE_CONNS" "$WORK/held.$1" &
  local holder=$!
  for _ in $(seq 1 1200); do [[ -f $WORK/held.$1 ]] && break; sleep 0.05; done
  [[ -f $WORK/held.$1 ]] || { echo "bench: could not open $IDLE_CONNS connections" >&2; kill $holder; return 1; }
  sleep 2  # measured as idle connections: idle for two seconds, like after a burst of traffic
  "$2"
  kill $holder 2>/dev/null; wait $holder 2>/dev/null || true
}
h_held_rss() { h_held=$(rss_kb "$hpid"); }
n_held_rss() { n_held=$(tree_rss_kb "$npid"); }
hold "$hport" h_held_rss
hold "$nport" n_held_rss

printf '\nGET /v1/version, %s workers, wrk -t2 -c%s -d%s, median of %s rounds\n' "$WORKERS" "$CONNS" "$DURATION" "$ROUNDS"
printf '%-22s %14s %14s %10s\n' "" "harmar" "nginx" "ratio"
printf '%-22s %14.0f %14.0f %10s\n' "requests/s" "$h_rps" "$n_rps" "$(ratio "$h_rps" "$n_rps")"
printf '%-22s %14.3f %14.3f %10s\n' "p99 latency (ms)" "$h_p99" "$n_p99" "$(ratio "$h_p99" "$n_p99")"
printf '%-22s %14.2f %14.2f %10s\n' "server CPU us/request" "$h_cpu" "$n_cpu" "$(ratio "$h_cpu" "$n_cpu")"
printf '%-22s %14d %14d %10s\n' "RSS idle (KiB)" "$h_idle" "$n_idle" "$(ratio "$h_idle" "$n_idle")"
printf '%-22s %14d %14d %10s\n' "RSS +${IDLE_CONNS} conns (KiB)" "$h_held" "$n_held" "$(ratio "$h_held" "$n_held")"
printf '%-22s %14.2f %14.2f %10s\n' "KiB per idle conn" "$(awk -v a=$h_held -v b=$h_idle -v n=$IDLE_CONNS 'BEGIN{print (a-b)/n}')" \
  "$(awk -v a=$n_held -v b=$n_idle -v n=$IDLE_CONNS 'BEGIN{print (a-b)/n}')" ""
