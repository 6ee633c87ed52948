# Shared helpers for bench/*.sh (sourced). Every benchmark runs harmar and its peer on this
# machine, same load, and prints one table: ours, the peer, the ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARMAR=${HARMAR:-$ROOT/build/release/harmar}
[[ -x $HARMAR ]] || { echo "bench: $HARMAR is missing: run 'make build' first" >&2; exit 1; }
WORK=$(mktemp -d /tmp/harmar-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_http() {  # wait_http URL: bounded readiness poll
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: $1 did not come up" >&2; return 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Total RSS of a process and its children (nginx workers), in KiB.
tree_rss_kb() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do total=$((total + $(rss_kb "$p"))); done
  echo "$total"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
