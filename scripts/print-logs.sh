#!/usr/bin/env bash
# Print the end of every log a failed `make test` leaves: the local servers'
# (deploy/local), the go test logs with their failure summaries, and the
# instance logs that failed cluster tests kept. .ci/run calls it on failure.
#
#   scripts/print-logs.sh [LINES]    # default 60 lines of each log
set -uo pipefail
lines=${1:-60}
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
logs="${HERALD_LOCAL_DIR:-$repo/.local}/logs"
tests="${HERALD_TEST_LOG_DIR:-$logs/tests}"

show() {
  local f=$1 n=$2
  [[ -s $f ]] || return 0
  printf '\n==== %s (last %d lines) ====\n' "$f" "$n"
  tail -n "$n" "$f"
}

shopt -s nullglob
for f in "$logs"/*.log; do
  case $f in *-build.log|*-install.log) continue ;; esac
  show "$f" "$lines"
done
for f in "$tests"/*.log; do
  # The summary at the end names each failing test and what it last saw.
  if grep -q '^==== failures in' "$f"; then
    printf '\n==== %s: failure summary ====\n' "$f"
    sed -n '/^==== failures in/,/^==== end of failures/p' "$f"
  fi
done
for f in "$tests"/cluster/*/*.log; do
  show "$f" 40
done
