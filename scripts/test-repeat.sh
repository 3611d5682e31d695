#!/usr/bin/env bash
# Run the server-backed test packages N times in a row and print how many runs
# passed: `make test-repeat N=10`. With LOAD=1 a busy loop keeps one core
# busy for the whole run, the load under which timing-dependent tests break.
#
#   scripts/test-repeat.sh N PKG...
#
# Each run's output is kept in $HERALD_TEST_LOG_DIR/repeat/run-<i>.log; the
# last line is "test-repeat: P passed, F failed".
set -uo pipefail
n=$1
shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${HERALD_TEST_LOG_DIR:-${HERALD_LOCAL_DIR:-$repo/.local}/logs/tests}/repeat"
mkdir -p "$dir"
cluster_pkg=github.com/herald-feed/herald/services/herald/clustertest

busy=""
stop_busy() { [[ -n $busy ]] && kill "$busy" 2>/dev/null; wait "$busy" 2>/dev/null; busy=""; }
trap stop_busy EXIT
if [[ ${LOAD:-0} == 1 ]]; then
  # Bounded: the loop ends by itself after 4 hours if this script is killed.
  timeout 4h bash -c 'while :; do :; done' &
  busy=$!
  echo "test-repeat: a busy loop (pid $busy) keeps one core busy"
fi

passed=0 failed=0
for ((i = 1; i <= n; i++)); do
  log="$dir/run-$i.log"
  start=$(date +%s)
  # The cluster tests restart the shared servers, so they run after the
  # other packages, on their own, as in make test.
  others=() cluster=()
  for p in "$@"; do
    if [[ $p == "$cluster_pkg" ]]; then cluster=("$p"); else others+=("$p"); fi
  done
  ok=1
  if ((${#others[@]})); then
    ${GO:-go} test -count=1 "${others[@]}" >"$log" 2>&1 || ok=0
  fi
  if ((${#cluster[@]})); then
    ${GO:-go} test -count=1 -timeout 15m "${cluster[@]}" >>"$log" 2>&1 || ok=0
  fi
  took=$(( $(date +%s) - start ))
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  if ((ok)); then
    passed=$((passed + 1))
    printf 'run %d/%d: pass in %d s (load average %s)\n' "$i" "$n" "$took" "$load"
  else
    failed=$((failed + 1))
    printf 'run %d/%d: FAIL in %d s (load average %s); log %s\n' "$i" "$n" "$took" "$load" "$log"
    "$repo/scripts/test-failures.sh" "$log"
  fi
done
stop_busy
echo "test-repeat: $passed passed, $failed failed"
((failed == 0))
