#!/usr/bin/env bash
# Installs every Debian package (and, later, npm module) that building, running, testing and
# benchmarking harmar needs. Idempotent: packages already present are not touched, so a second
# run costs a dpkg query and nothing else.
set -euo pipefail

# Build toolchain and the libraries src/ links against (see ARCHITECTURE.md "Dependencies").
build_pkgs=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates curl
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libnghttp2-dev libsqlite3-dev libpq-dev libhiredis-dev libsodium-dev
  libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev libcurl4-openssl-dev
  libkainjow-mustache-dev libpng-dev libgmime-3.0-dev
  libmariadb-dev
)
# Tests: GoogleTest, the real services the integration tests start, and the protocol clients
# they talk through (curl for HTTP/1.1 and h2, nghttp for h2c, python3-websockets for WebSocket,
# pytest for the integration suite, promtool to validate /metrics, openssl for test certificates,
# libFuzzer for the fuzz targets, python3-nacl for the end-to-end encrypted IM test client,
# python3-botocore to check S3 signatures in front of s3rver, tests/services/s3_sigv4_gate.py).
test_pkgs=(
  libgtest-dev libgmock-dev clang libfuzzer-14-dev libclang-rt-14-dev
  postgresql mariadb-server redis-server nghttp2-client python3 python3-pytest python3-websockets prometheus openssl
  python3-aiosmtpd python3-cryptography python3-nacl python3-botocore
)
# Benchmarks: the load generators and the peers they compare against.
bench_pkgs=(libbenchmark-dev wrk nginx-light hyperfine)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
[[ "${HARMAR_BENCH_DEPS:-1}" == 1 ]] && want+=("${bench_pkgs[@]}")
# Node runs the npm test services (below); Debian's nodejs/npm only when no node is installed.
command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)

# npm modules, each folder pinned by its package-lock.json and installed into its own
# node_modules: the test services (tests/services) and, with the bench packages, the queue
# benchmark's BullMQ (bench/queue), the realtime benchmark's Socket.IO (bench/ws) and the records
# benchmark's Hono + pg (bench/records). `npm ci` runs again only when a lock changed.
npm_dir() {
  local dir stamp
  dir="$(cd "$(dirname "$0")/.." && pwd)/$1"
  stamp="$dir/node_modules/.package-lock.sha256"
  [[ -f $dir/package-lock.json ]] || return 0
  if [[ -f $stamp ]] && (cd "$dir" && sha256sum --status -c "$stamp" 2>/dev/null); then return 0; fi
  echo "install-deps: npm ci in $1"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) && (cd "$dir" && sha256sum package-lock.json >"$stamp")
}
npm_deps() {
  npm_dir tests/services
  if [[ "${HARMAR_BENCH_DEPS:-1}" == 1 ]]; then npm_dir bench/queue; npm_dir bench/ws; npm_dir bench/records; fi
}

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  npm_deps
  echo "install-deps: everything is installed"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Services installed as packages must not start system-wide instances: tests start their own.
policy_added=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  policy_added=1
fi
trap '[[ $policy_added == 1 ]] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT
$sudo apt-get update -qq || $sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_deps
echo "install-deps: done"
