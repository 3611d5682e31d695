#!/usr/bin/env bash
# Run `go test` with the given arguments, keep its whole output in a log, and
# when it fails end with a summary: each failing test's name with the lines it
# printed (its last observed state), and each package that failed to build or
# panicked. `make test` runs every go test through this script.
#
#   scripts/gotest.sh NAME go-test-args...
#
# The log is $HERALD_TEST_LOG_DIR/NAME.log (default .local/logs/tests), which
# .ci/run prints the end of on failure, with the servers' logs.
set -uo pipefail
name=$1
shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${HERALD_TEST_LOG_DIR:-${HERALD_LOCAL_DIR:-$repo/.local}/logs/tests}"
mkdir -p "$dir"
log="$dir/$name.log"

start=$(date +%s)
${GO:-go} test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
took=$(( $(date +%s) - start ))
if (( rc == 0 )); then
  exit 0
fi
"$repo/scripts/test-failures.sh" "$log"
printf 'gotest: %s failed after %d s (exit %d); whole output in %s\n' "$name" "$took" "$rc" "$log" >&2
exit "$rc"
