#!/usr/bin/env bash
# The drill suite (make drills): run the cluster package's TestDrill* tests
# whose names after TestDrill match $1 (a go test -run pattern; default all
# of them) and not $2 (a -skip pattern; default none), then print the table
# they wrote and, as the last line, where its JSON is:
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
skip="${2:-}"
out="${HERALD_DRILLS_DIR:-$repo/loadtest/out/drills}"
export HERALD_DRILLS_DIR="$out"
rm -f "$out/drills.json" "$out/drills.md"

args=(-count=1 -timeout 40m -run "^TestDrill(${pattern})")
[[ -z $skip ]] || args+=(-skip "^TestDrill(${skip})")
"$repo/scripts/gotest.sh" drills "${args[@]}" github.com/herald-feed/herald/services/herald/clustertest
rc=$?
# The whole suite also runs the Cassandra store's test on the three-node ring (node failures
# at LOCAL_QUORUM and ONE), which make unit leaves out; it starts the ring itself.
if [[ $pattern == . && -z $skip ]]; then
  eval "$("$repo/deploy/local/cassandra-cluster.sh" env | grep HERALD_CASSANDRA_RING_HOSTS)"
  export HERALD_CASSANDRA_RING_HOSTS
  "$repo/scripts/gotest.sh" drills-ring -count=1 -timeout 20m -run '^TestRing' \
    github.com/herald-feed/herald/services/platform/cassandrastore || rc=1
fi
if [[ ! -f $out/drills.json ]]; then
  echo "drills: no drill wrote a row (pattern '$pattern'; exit $rc)" >&2
  exit $(( rc == 0 ? 1 : rc ))
fi
echo
cat "$out/drills.md"
echo "drills: json=$out/drills.json"
exit "$rc"
