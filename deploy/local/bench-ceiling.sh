#!/usr/bin/env bash
# Herald against the Redis ceiling, side by side on the same Redis in the
# same run:
#   - fan-out into small timelines: Herald's sustained deliveries/s
#     (BenchmarkCeiling/fanout) against redis-benchmark -P 64 ZADD to random
#     keys over the same number of users;
#   - fan-out into full timelines: the same (BenchmarkCeiling/fanout-full)
#     against raw pipelined ZADD into Herald's very timelines (800 entries,
#     listpack), the two timed in alternating rounds in the benchmark, since
#     this machine's speed moves by more than their difference between one
#     minute and the next; and, for reference, against redis-benchmark -P 64
#     ZADD into sets first filled with 800 members, in the same encoding;
#   - reads: Herald's warm GetHomeTimeline/s, in open loop (the highest
#     offered rate met with a p99 under 5 ms, BenchmarkCeiling/reads-open)
#     and in a saturated closed loop (BenchmarkCeiling/reads), against the
#     raw commands one read needs, ZREVRANGEBYLEX for 21 members plus MGET
#     of 20 post bodies, each by redis-benchmark -P 64;
#   - the transport's floor: the gRPC health check, which does no work,
#     offered open loop the same way (BenchmarkCeiling/noop-open): no read
#     can be sustained faster on this machine.
# Prints each rate, each ratio, and the Redis CPU each spent per operation,
# which says whether Redis or the rest bounds Herald. The last line is the
# same figures for scripts:
#
#   ceiling: fanout= zadd= fanout_ratio= fanout_full= zadd_full= fanout_full_ratio= reads= raw_reads= read_ratio= read_p99_ms= closed_reads= closed_p99_ms= noop_calls= read_noop_ratio= zadd_full_rb= fanout_full_rb_ratio=
#
# zadd_full is the alternating rounds' raw ZADD; zadd_full_rb redis-benchmark's.
#
#   deploy/local/bench-ceiling.sh    (USERS=20000 AUTHORS=4 FOLLOWERS=9000 POSTS=100 READ_SECONDS=10 OPEN_STEP_SECONDS=3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

source "$LOCAL_SCRIPTS/bench-redis-lib.sh"
users=${USERS:-20000}
n=${ZADD_REQUESTS:-1000000}

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

# Full timelines: $users sets of 800 8-byte members each, the keys
# redis-benchmark's -r draws (__rand_int__ is 12 zero-padded digits), filled
# 500 keys a script call. Each member starts with a 0xff byte, as the
# complement of a post ID does in Herald's timelines, so that the ZADDs'
# members (digits) go in at the head of the listpack, where Herald's new
# posts go. 801 to 850 members stay below the server's
# zset-max-listpack-entries (1024), the encoding of Herald's full timelines.
# The first set is filled by ZADD and the others are COPYs of it: a ZADD of
# 800 members into a listpack costs Redis milliseconds (each member is
# looked up and placed by a scan), and 20,000 of them took minutes.
say "filling $users sets with 800 members each ..."
fill='local a = {}
for i = 1, 800 do a[2 * i - 1] = 0; a[2 * i] = "\255" .. string.format("%07d", 801 - i) end
local first = string.format("ceil:full:{%012d}", 0)
redis.call("zadd", first, unpack(a))
for k = math.max(1, tonumber(ARGV[1])), tonumber(ARGV[2]) - 1 do
  redis.call("copy", first, string.format("ceil:full:{%012d}", k), "replace")
end
return 0'
for ((from = 0; from < users; from += 500)); do
  rcli eval "$fill" 0 "$from" "$((from + 500 < users ? from + 500 : users))" >/dev/null
done
encoding=$(rcli object encoding "ceil:full:{000000000000}")
[[ $encoding == listpack ]] || die "a filled set's encoding is $encoding, not listpack: check zset-max-listpack-entries"
bench "$n ZADDs into $users full sets (800 members, listpack), pipelined 64 deep" -n "$n" -P 64 -r "$users" \
  zadd "ceil:full:{__rand_int__}" 0 __rand_int__
zadd_full_rb=$rate zadd_full_rb_cpu=$cpu_us
rcli --scan --pattern 'ceil:full:*' | rdel unlink
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
  HERALD_CEILING_READS="${READ_SECONDS:-10}" HERALD_CEILING_OPEN_STEP="${OPEN_STEP_SECONDS:-3}" \
  GOWORK="$REPO/go.work" go test -run '^$' -bench '^BenchmarkCeiling$' -benchtime 1x -timeout 30m ./services/herald/allinone)
printf '%s\n' "$out" | grep -E '^(Benchmark|    ceiling)' || { printf '%s\n' "$out"; exit 1; }
# metric NAME UNIT: the figure UNIT of BenchmarkCeiling/NAME.
metric() { printf '%s\n' "$out" | grep -E "^BenchmarkCeiling/$1(-[0-9]+)?[[:space:]]" | grep -o "[0-9.]* $2" | cut -d' ' -f1 || true; }
deliveries=$(metric fanout 'deliveries/s')
fan_redis=$(metric fanout redis-cpu-s)
fan_herald=$(metric fanout herald-cpu-s)
deliveries_full=$(metric fanout-full 'deliveries/s')
full_redis=$(metric fanout-full redis-cpu-s)
full_herald=$(metric fanout-full herald-cpu-s)
zadd_full=$(metric fanout-full 'zadd/s')
zadd_full_cpu=$(metric fanout-full zadd-redis-us)
closed_reads=$(metric reads 'reads/s')
closed_p99=$(metric reads p99-ms)
closed_redis=$(metric reads redis-cpu-s)
closed_herald=$(metric reads herald-cpu-s)
open_reads=$(metric reads-open 'reads/s')
open_p99=$(metric reads-open p99-ms)
open_redis=$(metric reads-open redis-cpu-us/read)
open_herald=$(metric reads-open herald-cpu-us/read)
noop_calls=$(metric noop-open 'calls/s')
noop_herald=$(metric noop-open herald-cpu-us/call)
total_deliveries=$(( ${POSTS:-100} * ${FOLLOWERS:-9000} ))
read_count=$(awk -v r="$closed_reads" -v s="${READ_SECONDS:-10}" 'BEGIN { printf "%d", r * s }')

echo
awk -v zadd="$zadd" -v zc="$zadd_cpu" -v d="$deliveries" -v fr="$fan_redis" -v fh="$fan_herald" -v nd="$total_deliveries" \
    -v zf="$zadd_full" -v zfc="$zadd_full_cpu" -v zfr="$zadd_full_rb" -v zfrc="$zadd_full_rb_cpu" -v df="$deliveries_full" -v ffr="$full_redis" -v ffh="$full_herald" \
    -v range="$range" -v rc="$range_cpu" -v mget="$mget" -v mc="$mget_cpu" \
    -v cr="$closed_reads" -v cp99="$closed_p99" -v crr="$closed_redis" -v crh="$closed_herald" -v nr="$read_count" \
    -v orate="$open_reads" -v op99="$open_p99" -v orr="${open_redis:-0}" -v orh="${open_herald:-0}" \
    -v noop="$noop_calls" -v nh="${noop_herald:-0}" 'BEGIN {
  raw = 1 / (1 / range + 1 / mget)
  printf "%-56s %12s %14s %14s\n", "", "per second", "Redis CPU/op", "Herald CPU/op"
  printf "%-56s %12.0f %11.2f us\n", "redis-benchmark -P 64 ZADD, random keys (ceiling)", zadd, zc
  printf "%-56s %12.0f %11.2f us %11.2f us\n", "Herald fan-out deliveries, small timelines", d, 1e6 * fr / nd, 1e6 * fh / nd
  printf "%-56s %11.1f %%\n", "  fan-out / ZADD ceiling", 100 * d / zadd
  printf "%-56s %12.0f %11.2f us\n", "raw pipelined ZADD into the full timelines (rounds)", zf, zfc
  printf "%-56s %12.0f %11.2f us %11.2f us\n", "Herald fan-out deliveries, full timelines (rounds)", df, 1e6 * ffr / nd, 1e6 * ffh / nd
  printf "%-56s %11.1f %%\n", "  full-timeline fan-out / ZADD ceiling", 100 * df / zf
  printf "%-56s %12.0f %11.2f us\n", "redis-benchmark -P 64 ZADD into 800-member sets", zfr, zfrc
  printf "%-56s %11.1f %%\n", "  full-timeline fan-out / redis-benchmark", 100 * df / zfr
  printf "%-56s %12.0f %11.2f us\n", "redis-benchmark ZREVRANGEBYLEX 21 + MGET 20 (ceiling)", raw, rc + mc
  printf "%-56s %12.0f %11.2f us %11.2f us\n", "Herald GetHomeTimeline, open loop, p99 < 5 ms", orate, orr, orh
  printf "%-56s %11.1f %%\n", "  open-loop reads / raw ceiling", 100 * orate / raw
  printf "%-56s %9.2f ms\n", "  p99 at that rate", op99
  printf "%-56s %12.0f %14s %11.2f us\n", "gRPC health check, open loop, p99 < 5 ms (floor)", noop, "", nh
  printf "%-56s %11.1f %%\n", "  open-loop reads / that floor", (noop > 0 ? 100 * orate / noop : 0)
  printf "%-56s %12.0f %11.2f us %11.2f us\n", "Herald GetHomeTimeline, closed loop, 32 readers", cr, (nr > 0 ? 1e6 * crr / nr : 0), (nr > 0 ? 1e6 * crh / nr : 0)
  printf "%-56s %9.2f ms\n", "  closed-loop p99", cp99
}'

# The last line is for scripts: the same figures, machine-readable. reads
# and read_p99_ms are the open loop's; closed_* the saturated closed loop's.
awk -v zadd="$zadd" -v d="$deliveries" -v zf="$zadd_full" -v zfr="$zadd_full_rb" -v df="$deliveries_full" -v range="$range" -v mget="$mget" \
    -v orate="$open_reads" -v op99="$open_p99" -v cr="$closed_reads" -v cp99="$closed_p99" -v noop="$noop_calls" 'BEGIN {
  raw = 1 / (1 / range + 1 / mget)
  printf "ceiling: fanout=%.0f zadd=%.0f fanout_ratio=%.3f fanout_full=%.0f zadd_full=%.0f fanout_full_ratio=%.3f reads=%.0f raw_reads=%.0f read_ratio=%.3f read_p99_ms=%.2f closed_reads=%.0f closed_p99_ms=%.2f noop_calls=%.0f read_noop_ratio=%.3f zadd_full_rb=%.0f fanout_full_rb_ratio=%.3f\n",
    d, zadd, d / zadd, df, zf, df / zf, orate, raw, orate / raw, op99, cr, cp99, noop, (noop > 0 ? orate / noop : 0), zfr, df / zfr
}'
