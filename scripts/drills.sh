#!/usr/bin/env bash
# The drill suite (make drills): run the cluster package's TestDrill* tests
# that match $1 (a go test -run pattern; default all of them), then print
# the table they wrote and, as the last line, where its JSON is:
#
#   drills: json=<path>
#
# The drills restart and kill local servers (deploy/local): nothing else
# should use them meanwhile. Each drill writes its row when it ends, passed
# or failed, so the table is printed after a failure too, and the script
# exits with go test's status.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pattern="${1:-.}"
out="${HERALD_DRILLS_DIR:-$repo/loadtest/out/drills}"
export HERALD_DRILLS_DIR="$out"
rm -f "$out/drills.json" "$out/drills.md"

"$repo/scripts/gotest.sh" drills -count=1 -timeout 30m -run "^TestDrill(${pattern})" \
  github.com/herald-feed/herald/services/herald/clustertest
rc=$?
if [[ ! -f $out/drills.json ]]; then
  echo "drills: no drill wrote a row (pattern '$pattern'; exit $rc)" >&2
  exit $(( rc == 0 ? 1 : rc ))
fi
echo
cat "$out/drills.md"
echo "drills: json=$out/drills.json"
exit "$rc"
