#!/usr/bin/env bash
# Herald's post→visible lag of a pushed post, all-in-one in process with
# Redis timelines, for an author with 1,000 followers (20 posts), 100,000
# (5 posts) and 1,000,000 (3 posts), all active. Each run also times raw
# pipelined ZADD into the same timelines on the same Redis right after
# Herald's posts (zadd-s; see zaddBaseline in
# services/herald/allinone/lag_bench_test.go), so that the 1,000,000 case
# has its own baseline from the same run: million_s is that post's
# all-delivered time (until the fan-out had written it to every follower),
# median over its posts; million_ratio is million_s / million_zadd_s.
# Prints each run's Benchmark line, then one machine-readable last line.
#
# FULL=1 adds the 1,000,000-follower post into full timelines: every
# follower's timeline filled to the cap (800 entries) first, as a real
# deployment's are, and the baseline's ZADDs into those. It needs about
# 11 GB of Redis memory, and its figures end the last line
# (million_full_s, million_full_zadd_s, million_full_ratio).
#
#   deploy/local/bench-lag.sh    (HERALD_LAG_MILLION_FOLLOWERS=1000000 FULL=)
#
# It needs only Redis, which it starts or reuses like the other scripts (the
# benchmarks embed etcd and NATS, and keep posts and the graph in Pebble).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$LOCAL_SCRIPTS/redis.sh" >/dev/null
eval "$("$LOCAL_SCRIPTS/env.sh")"

# lag LABEL BENCH BENCHTIME: runs one benchmark of the allinone package
# against Redis; sets out to its output and prints its Benchmark line and
# logs (the whole output if it failed).
lag() {
  say "Herald: $1 (sets up the graph and active timelines first) ..."
  if ! out=$(cd "$REPO" && HERALD_BENCH_CACHE=redis GOWORK="$REPO/go.work" \
    go test -run '^$' -bench "$2" -benchtime "$3" -timeout 30m ./services/herald/allinone 2>&1); then
    printf '%s\n' "$out"
    die "$1 failed"
  fi
  printf '%s\n' "$out" | grep -E '^(Benchmark|    lag_bench_test)' || { printf '%s\n' "$out"; die "$1: no Benchmark line"; }
}
# metric UNIT: the figure of UNIT on out's Benchmark line.
metric() {
  local v
  v=$(printf '%s\n' "$out" | grep '^Benchmark' | grep -oE "[0-9.]+ $1([[:space:]]|$)" | cut -d' ' -f1)
  [[ -n $v ]] || die "no $1 on the Benchmark line"
  printf '%s\n' "$v"
}

lag "1,000 followers, 20 posts" 'FanoutLag/followers=1000$' 20x
p99_1k=$(metric p99-ms)
lag "100,000 followers, 5 posts" 'FanoutLag/followers=100000$' 5x
p99_100k=$(metric p99-ms)
lag "${HERALD_LAG_MILLION_FOLLOWERS:-1000000} followers, 3 posts" 'FanoutMillion' 1x
million_ms=$(metric all-delivered-p50-ms)
million_zadd=$(metric zadd-s)
million_ratio=$(metric ratio)
full=""
if [[ ${FULL:-} == 1 ]]; then
  HERALD_LAG_FULL_TIMELINES=1 lag "${HERALD_LAG_MILLION_FOLLOWERS:-1000000} followers, 3 posts, full timelines" 'FanoutMillion' 1x
  full=$(awk -v m="$(metric all-delivered-p50-ms)" -v z="$(metric zadd-s)" -v r="$(metric ratio)" 'BEGIN {
    printf " million_full_s=%.3f million_full_zadd_s=%.3f million_full_ratio=%.3f", m / 1000, z, r
  }')
fi

# The last line is for scripts.
awk -v a="$p99_1k" -v b="$p99_100k" -v m="$million_ms" -v z="$million_zadd" -v r="$million_ratio" -v full="$full" 'BEGIN {
  printf "lag: p99_1k_ms=%.2f p99_100k_ms=%.2f million_s=%.3f million_zadd_s=%.3f million_ratio=%.3f%s\n", a, b, m / 1000, z, r, full
}'
