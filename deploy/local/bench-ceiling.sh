#!/usr/bin/env bash
# Herald against the Redis ceiling, side by side on the same Redis in the
# same run:
#   - fan-out: Herald's sustained deliveries/s (BenchmarkCeiling/fanout)
#     against redis-benchmark -P 64 ZADD to random keys over the same
#     number of users;
#   - reads: Herald's warm GetHomeTimeline/s (BenchmarkCeiling/reads)
#     against the raw commands one read needs, ZREVRANGEBYLEX for 21
#     members plus MGET of 20 post bodies, each by redis-benchmark -P 64.
# Prints each rate, each ratio, and the Redis CPU each spent per operation,
# which says whether Redis or the rest bounds Herald.
#
#   deploy/local/bench-ceiling.sh    (USERS=20000 AUTHORS=4 FOLLOWERS=9000 POSTS=100 READ_SECONDS=10)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$LOCAL_SCRIPTS/redis.sh" >/dev/null
eval "$("$LOCAL_SCRIPTS/env.sh")"
port=${HERALD_REDIS_ADDR##*:}
users=${USERS:-20000}
n=${ZADD_REQUESTS:-1000000}
# Herald's login (env.sh). redis-cli takes the password from its environment (REDISCLI_AUTH);
# redis-benchmark only from its command line (-a), where this machine's users can see it
# while a benchmark runs: it is the local test server's.
rcli() { REDISCLI_AUTH=$(<"$HERALD_REDIS_PASSWORD_FILE") redis-cli -h "$HOST" -p "$port" --user "$HERALD_REDIS_USER" "$@"; }
rbench() { redis-benchmark -h "$HOST" -p "$port" --user "$HERALD_REDIS_USER" -a "$(<"$HERALD_REDIS_PASSWORD_FILE")" "$@"; }
# rdel CMD: CMD (del or unlink) the keys read from stdin, 5000 a call.
rdel() {
  REDISCLI_AUTH=$(<"$HERALD_REDIS_PASSWORD_FILE") \
    xargs -r -n 5000 redis-cli -h "$HOST" -p "$port" --user "$HERALD_REDIS_USER" "$1" >/dev/null
}
cpu() { rcli info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f", s }'; }

# bench LABEL ARGS...: runs redis-benchmark -q ARGS; sets rate and the
# Redis CPU microseconds per request in cpu_us.
bench() {
  local label=$1 requests=$3 c0 c1 out
  shift
  say "redis-benchmark: $label ..."
  c0=$(cpu)
  out=$(rbench -q "$@" | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1 | cut -d' ' -f1)
  c1=$(cpu)
  rate=$out
  cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$requests" 'BEGIN { printf "%.2f", 1e6 * (b - a) / n }')
}
cleanup() { rcli --scan --pattern 'ceil:*' | rdel unlink; }
trap cleanup EXIT

bench "$n ZADDs to random keys among $users users, pipelined 64 deep" -n "$n" -P 64 -r "$users" \
  zadd "ceil:tl:{__rand_int__}" 0 __rand_int__
zadd=$rate zadd_cpu=$cpu_us
reads=$((n / 4))
bench "$reads ZREVRANGEBYLEX of 21 members over those timelines" -n "$reads" -P 64 -r "$users" \
  zrevrangebylex "ceil:tl:{__rand_int__}" + - LIMIT 0 21
range=$rate range_cpu=$cpu_us
say "redis-benchmark: filling 100000 post bodies of 120 bytes ..."
rbench -q -n 200000 -P 64 -r 100000 -d 120 \
  set "ceil:post:{__rand_int__}" __data__ >/dev/null
mget_keys=()
for _ in $(seq 20); do mget_keys+=("ceil:post:{__rand_int__}"); done
bench "$reads MGETs of 20 post bodies" -n "$reads" -P 64 -r 100000 mget "${mget_keys[@]}"
mget=$rate mget_cpu=$cpu_us
cleanup

say "Herald: BenchmarkCeiling (all-in-one in process, Redis timelines; sets up the graph first) ..."
out=$(cd "$REPO" && HERALD_CEILING_USERS="$users" HERALD_CEILING_AUTHORS="${AUTHORS:-4}" \
  HERALD_CEILING_FOLLOWERS="${FOLLOWERS:-9000}" HERALD_CEILING_POSTS="${POSTS:-100}" \
  HERALD_CEILING_READS="${READ_SECONDS:-10}" \
  GOWORK="$REPO/go.work" go test -run '^$' -bench '^BenchmarkCeiling$' -benchtime 1x -timeout 30m ./services/herald/allinone)
printf '%s\n' "$out" | grep -E '^(Benchmark|    ceiling)' || { printf '%s\n' "$out"; exit 1; }
metric() { printf '%s\n' "$out" | grep "^BenchmarkCeiling/$1" | grep -o "[0-9.]* $2" | cut -d' ' -f1; }
deliveries=$(metric fanout 'deliveries/s')
fan_redis=$(metric fanout redis-cpu-s)
fan_herald=$(metric fanout herald-cpu-s)
herald_reads=$(metric reads 'reads/s')
read_p99=$(metric reads p99-ms)
read_redis=$(metric reads redis-cpu-s)
total_deliveries=$(( ${POSTS:-100} * ${FOLLOWERS:-9000} ))
read_count=$(awk -v r="$herald_reads" -v s="${READ_SECONDS:-10}" 'BEGIN { printf "%d", r * s }')

echo
awk -v zadd="$zadd" -v zc="$zadd_cpu" -v d="$deliveries" -v fr="$fan_redis" -v fh="$fan_herald" -v nd="$total_deliveries" \
    -v range="$range" -v rc="$range_cpu" -v mget="$mget" -v mc="$mget_cpu" \
    -v hr="$herald_reads" -v p99="$read_p99" -v rr="$read_redis" -v nr="$read_count" 'BEGIN {
  raw = 1 / (1 / range + 1 / mget)
  printf "%-52s %12s %16s\n", "", "per second", "Redis CPU/op"
  printf "%-52s %12.0f %14.2f us\n", "redis-benchmark -P 64 ZADD, random keys (ceiling)", zadd, zc
  printf "%-52s %12.0f %14.2f us\n", "Herald fan-out deliveries (sustained)", d, 1e6 * fr / nd
  printf "%-52s %11.1f %%\n", "  fan-out / ZADD ceiling", 100 * d / zadd
  printf "%-52s %12s %14.2f us\n", "  Herald process CPU per delivery", "", 1e6 * fh / nd
  printf "%-52s %12.0f %14.2f us\n", "redis-benchmark ZREVRANGEBYLEX 21 + MGET 20 (ceiling)", raw, rc + mc
  printf "%-52s %12.0f %14.2f us\n", "Herald GetHomeTimeline, warm, 20 posts", hr, (nr > 0 ? 1e6 * rr / nr : 0)
  printf "%-52s %11.1f %%\n", "  reads / raw ceiling", 100 * hr / raw
  printf "%-52s %9.2f ms\n", "  GetHomeTimeline p99", p99
}'

# The last line is for scripts: the same figures, machine-readable. (The
# full-timeline figures of issue 11 are not measured yet.)
awk -v zadd="$zadd" -v d="$deliveries" -v range="$range" -v mget="$mget" -v hr="$herald_reads" -v p99="$read_p99" 'BEGIN {
  raw = 1 / (1 / range + 1 / mget)
  printf "ceiling: fanout=%.0f zadd=%.0f fanout_ratio=%.3f reads=%.0f raw_reads=%.0f read_ratio=%.3f read_p99_ms=%.2f\n", d, zadd, d / zadd, hr, raw, hr / raw, p99
}'
