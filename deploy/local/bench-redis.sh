#!/usr/bin/env bash
# Redis timeline-insert throughput through Herald's adapter, side by side with
# redis-benchmark's pipelined ZADD on the same Redis in the same run: the
# adapter's ceiling. Prints both figures and their ratio.
#
#   deploy/local/bench-redis.sh            (BENCHTIME=5s, USERS=100000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

source "$LOCAL_SCRIPTS/bench-redis-lib.sh"
users=${USERS:-100000}
n=${ZADD_REQUESTS:-1000000}

say "redis-benchmark: $n ZADDs to random keys among $users, pipelined 64 deep ..."
zadd=$(rbench -P 64 -n "$n" -r "$users" -q \
  zadd "bench:{__rand_int__}" 0 __rand_int__ | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1 | cut -d' ' -f1)
say "redis-benchmark: $n calls of Herald's insert script (services/platform/rediscache/insert.lua) by EVALSHA, one timeline per call ..."
sha=$(rcli script load "$(cat "$REPO/services/platform/rediscache/insert.lua")")
script=$(rbench -P 64 -n "$n" -r "$users" -q \
  evalsha "$sha" 2 "bench:{__rand_int__}:tl" "bench:{__rand_int__}:claim" 800 604800000 add 1 __rand_int__ | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1 | cut -d' ' -f1)
rcli --scan --pattern 'bench:*' | rdel del

say "Herald adapter: Add batches of 1,000 entries over $users active users, the fan-out's path (BenchmarkAddBatch/active) ..."
out=$(cd "$REPO/services/platform" && env -u GOWORK go test ./rediscache -run '^$' -bench '^BenchmarkAddBatch$/^active$' \
  -benchtime "${BENCHTIME:-5s}" -count 1)
printf '%s\n' "$out" | grep Benchmark
herald=$(printf '%s\n' "$out" | grep -o '[0-9.]* inserts/s' | cut -d' ' -f1)

printf '\n%-44s %12.0f /s\n' "redis-benchmark -P 64 ZADD (ceiling)" "$zadd"
printf '%-44s %12.0f /s\n' "redis-benchmark -P 64 EVALSHA insert.lua (1/call)" "$script"
printf '%-44s %12.0f /s\n' "Herald rediscache.Add, active users" "$herald"
awk -v h="$herald" -v z="$zadd" -v s="$script" 'BEGIN {
  printf "%-44s %12.1f %%\n", "adapter / ZADD ceiling", 100 * h / z
  printf "%-44s %12.1f %%\n", "script by redis-benchmark / ZADD ceiling", 100 * s / z
  printf "%-44s %12.1f %%\n", "adapter / script by redis-benchmark", 100 * h / s
}'
