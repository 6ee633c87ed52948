#!/usr/bin/env bash
# Starts the test services, runs CTest on the given build preset, and always stops the services.
set -euo pipefail
preset=${1:-debug}
cd "$(dirname "$0")/.."
state="$PWD/build/test-services"
scripts/test-services.sh start "$state" >/dev/null
trap 'scripts/test-services.sh stop "$state"' EXIT
# shellcheck disable=SC1091
source "$state/env"
export HARMAR_BIN="$PWD/build/$preset/harmar"
ctest --preset "$preset" ${CTEST_ARGS:-}
