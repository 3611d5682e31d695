#!/usr/bin/env bash
# Home-timeline representations side by side on one Redis in one run, each
# holding TIMELINES full timelines of 800 entries:
#   lp   sorted set, listpack (today's: 8-byte big-endian IDs, score 0, the
#        completeness marker ""; zset-max-listpack-entries 1024);
#   rv   the same, but each member is the ID's complement (~ID), so that the
#        newest entry sorts first and a marker of nine 0xff bytes last: an
#        insert of a new post stops its listpack scan at the first entry;
#   sl   the same set forced into a skiplist (a 65-byte member added and
#        removed: a set never converts back);
#   ls   a list, newest first, written with LPUSHX and LTRIM 0 799;
#   bk   the timeline cut into 8 sorted sets of 100 entries, plus an index
#        set of the buckets' first IDs and the marker; inserts go to the
#        newest bucket;
#   s6   sorted set of 6-byte members (the ID's low 48 bits);
#   dec  sorted set of decimal IDs, which a listpack stores as integers.
# For each it measures, with redis-benchmark -P 64 over random keys of that
# representation: the insert (ZADD or LPUSHX) and the trim that follows one
# insert in eight (ZREMRANGEBYRANK, LTRIM; for buckets the ZCARD that tells a
# full bucket), each as Redis CPU per command from INFO cpu and as a rate;
# the bytes per entry (MEMORY USAGE of a sample of timelines, and the
# used_memory the fill added); and the Redis CPU of reading a page of 20.
# The last line is for scripts.
#
#   deploy/local/bench-representations.sh   (TIMELINES=20000 ROUNDS=3 READS=200000 SAMPLE=200)
#
# The timelines are copies of one template per representation (COPY is a
# memcpy of a listpack), which fills millions of entries in seconds; the
# inserts, random 12-digit members from redis-benchmark, are new to every
# set and sort where a new post goes. Every key made starts with rep: and is
# removed on exit. At the default size it holds about 3 GB (the skiplists
# most of it), so give it a Redis of its own:
#   HERALD_LOCAL_DIR=/tmp/rep-local HERALD_REDIS_PORT=6590 deploy/local/bench-representations.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

source "$LOCAL_SCRIPTS/bench-redis-lib.sh"
keys=${TIMELINES:-20000}
rounds=${ROUNDS:-3}
reads=${READS:-200000}
sample=${SAMPLE:-200}
((sample <= keys)) || sample=$keys
entries=800
used_memory() { rcli info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }
cleanup() { rcli --scan --pattern 'rep:*' | rdel unlink; }
trap cleanup EXIT
cleanup

# fill.lua builds the templates (ARGV: "templates") and copies them into
# timelines ARGV[3]..ARGV[4] of representation ARGV[2] (ARGV: "copy"). Key
# names match redis-benchmark's __rand_int__, a 12-digit number. It names
# keys it was not given, which a single Redis allows.
#
# The j-th oldest entry is a Snowflake ID (see services/platform/idgen) of
# about three years past its epoch, one post every 5 s or so. Lua's numbers
# are doubles, exact to 2^53, so an ID is kept as its high and low 32 bits.
fill_lua=$(
  cat <<'LUA'
local function id(j)
  local ms = 91000000000 + j * 5000 + (j * 7919) % 3000
  local low = (j * 104729) % 4194304
  return math.floor(ms / 1024), (ms % 1024) * 4194304 + low
end
local function be8(j) local hi, lo = id(j); return struct.pack(">I4I4", hi, lo) end
local function rev8(j) local hi, lo = id(j); return struct.pack(">I4I4", 4294967295 - hi, 4294967295 - lo) end
-- decimal: long division of hi * 2^32 + lo by 10.
local function dec(j)
  local hi, lo = id(j)
  local digits = {}
  repeat
    local t = (hi % 10) * 4294967296 + lo
    hi, lo = math.floor(hi / 10), math.floor(t / 10)
    digits[#digits + 1] = t % 10
  until hi == 0 and lo == 0
  local s = {}
  for i = #digits, 1, -1 do s[#s + 1] = digits[i] end
  return table.concat(s)
end
local function zset(key, first, last, member, marker)
  local args = {}
  for j = first, last do args[#args + 1] = 0; args[#args + 1] = member(j) end
  if marker then args[#args + 1] = 0; args[#args + 1] = marker end
  redis.call("ZADD", key, unpack(args))
end
local n = 800
if ARGV[1] == "templates" then
  zset("rep:tmpl:lp", 0, n - 1, be8, "")
  zset("rep:tmpl:rv", 0, n - 1, rev8, string.rep("\255", 9))
  zset("rep:tmpl:s6", 0, n - 1, function(j) return be8(j):sub(3) end, "")
  zset("rep:tmpl:dec", 0, n - 1, dec, "")
  local list = {}
  for j = n - 1, 0, -1 do list[#list + 1] = be8(j) end
  redis.call("RPUSH", "rep:tmpl:ls", unpack(list))
  local firsts = {}
  for b = 0, n / 100 - 1 do
    zset("rep:tmpl:bk:" .. b, 100 * b, 100 * b + 99, be8, nil)
    firsts[#firsts + 1] = 0; firsts[#firsts + 1] = be8(100 * b)
  end
  redis.call("ZADD", "rep:tmpl:bk:ix", 0, "", unpack(firsts))
  return dec(n - 1)
end
local kind, long = ARGV[2], string.rep("x", 65)
for i = tonumber(ARGV[3]), tonumber(ARGV[4]) do
  local key = string.format("rep:%s:{%012d}", kind, i)
  if kind == "bk" then
    for b = 0, n / 100 - 1 do redis.call("COPY", "rep:tmpl:bk:" .. b, key .. ":" .. b) end
    redis.call("COPY", "rep:tmpl:bk:ix", key .. ":ix")
  elseif kind == "sl" then
    redis.call("COPY", "rep:tmpl:lp", key)
    redis.call("ZADD", key, 0, long)
    redis.call("ZREM", key, long)
  else
    redis.call("COPY", "rep:tmpl:" .. kind, key)
  end
end
return 0
LUA
)

key_of() { printf 'rep:%s:{%012d}' "$1" "$2"; }
# timeline_keys KIND I: the keys of timeline I.
timeline_keys() {
  local k
  k=$(key_of "$1" "$2")
  if [[ $1 == bk ]]; then
    printf '%s\n' "$k:"{0..7} "$k:ix"
  else
    printf '%s\n' "$k"
  fi
}

say "templates: newest stored ID $(rcli eval "$fill_lua" 0 templates); copying them into $keys timelines of $entries entries for each representation ..."
kinds=(lp rv sl ls bk s6 dec)
declare -A mem_used mem_usage encoding ins_us ins_rate trim_us read_us read_rate
for kind in "${kinds[@]}"; do
  m0=$(used_memory)
  t0=$(now_ms)
  for ((first = 0; first < keys; first += 500)); do
    last=$((first + 499 < keys - 1 ? first + 499 : keys - 1))
    rcli eval "$fill_lua" 0 copy "$kind" "$first" "$last" >/dev/null
  done
  m1=$(used_memory)
  mem_used[$kind]=$(awk -v a="$m0" -v b="$m1" -v n="$((keys * entries))" 'BEGIN { printf "%.1f", (b - a) / n }')
  # MEMORY USAGE of a sample of timelines (all of a timeline's keys), SAMPLES 0 to count
  # every element of a skiplist.
  mem_usage[$kind]=$(
    for ((s = 0; s < sample; s++)); do timeline_keys "$kind" $(((s * keys) / sample)); done |
      awk '{ print "memory usage", $1, "samples 0" }' | rcli |
      awk -v n="$((sample * entries))" '{ t += $1 } END { printf "%.1f", t / n }'
  )
  encoding[$kind]=$(rcli object encoding "$(key_of "$kind" $((keys - 1)))$([[ $kind == bk ]] && printf ':7')")
  say "  $kind: ${encoding[$kind]}, filled in $(($(now_ms) - t0)) ms, ${mem_usage[$kind]} B/entry by MEMORY USAGE, ${mem_used[$kind]} by used_memory"
done
[[ ${encoding[lp]} == listpack && ${encoding[rv]} == listpack && ${encoding[sl]} == skiplist && ${encoding[bk]} == listpack ]] ||
  die "unexpected encodings: lp ${encoding[lp]}, sl ${encoding[sl]}, bk ${encoding[bk]} (is zset-max-listpack-entries 1024?)"

# bench REQUESTS ARGS...: redis-benchmark -q -P 64 -r $keys -n REQUESTS ARGS; sets rate and
# the Redis CPU microseconds per request in cpu_us.
bench() {
  local requests=$1 c0 c1 out
  shift
  c0=$(cpu)
  # redis-benchmark warns that Herald's user may not read CONFIG; a run without a rate failed.
  out=$(rbench -q -P 64 -r "$keys" -n "$requests" "$@" 2>&1 | tr '\r' '\n')
  rate=$(grep -o '[0-9.]* requests per second' <<<"$out" | tail -n 1 | cut -d' ' -f1) ||
    die "redis-benchmark $*: $out"
  c1=$(cpu)
  cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$requests" 'BEGIN { printf "%.2f", 1e6 * (b - a) / n }')
}

# Reads first, on timelines of exactly 800: the top page of 20 (21 members, room for the
# marker). A list is in arrival order, so a page with room for stragglers and duplicates
# is 40 entries, and an exact one (sorted, deduplicated, cut at a cursor) needs all 800.
declare -A read_cmd=(
  [lp]='zrevrangebylex rep:lp:{__rand_int__} + - LIMIT 0 21'
  [rv]='zrangebylex rep:rv:{__rand_int__} - + LIMIT 0 21'
  [sl]='zrevrangebylex rep:sl:{__rand_int__} + - LIMIT 0 21'
  [ls]='lrange rep:ls:{__rand_int__} 0 39'
  [ls_all]='lrange rep:ls:{__rand_int__} 0 -1'
  [bk]='zrevrangebylex rep:bk:{__rand_int__}:7 + - LIMIT 0 21'
  [s6]='zrevrangebylex rep:s6:{__rand_int__} + - LIMIT 0 21'
  [dec]='zrevrangebylex rep:dec:{__rand_int__} + - LIMIT 0 21'
)
for kind in lp rv sl ls ls_all bk s6 dec; do
  say "redis-benchmark: $reads page reads, $kind: ${read_cmd[$kind]} ..."
  # shellcheck disable=SC2086 # the command's words
  bench "$reads" ${read_cmd[$kind]}
  read_us[$kind]=$cpu_us read_rate[$kind]=$rate
done

# Inserts: ROUNDS rounds of 8 inserts per timeline on average, then one trim per timeline
# on average, like the fan-out's one trim in eight. Each new member sorts above every
# stored ID: "0..." (0x30) is above the IDs' first byte (0x05; 0x01 for s6), and
# "9..." above the decimal IDs, which start with 3; for rv, "0..." is below the
# complements' 0xfa, which is where the newest goes.
declare -A ins_cmd=(
  [lp]='zadd rep:lp:{__rand_int__} 0 __rand_int__'
  [rv]='zadd rep:rv:{__rand_int__} 0 __rand_int__'
  [sl]='zadd rep:sl:{__rand_int__} 0 __rand_int__'
  [ls]='lpushx rep:ls:{__rand_int__} __rand_int__'
  [bk]='zadd rep:bk:{__rand_int__}:7 0 __rand_int__'
  [s6]='zadd rep:s6:{__rand_int__} 0 __rand_int__'
  [dec]='zadd rep:dec:{__rand_int__} 0 9__rand_int__'
)
declare -A trim_cmd=(
  [lp]='zremrangebyrank rep:lp:{__rand_int__} 1 -801'
  [rv]='zremrangebyrank rep:rv:{__rand_int__} 800 -2'
  [sl]='zremrangebyrank rep:sl:{__rand_int__} 1 -801'
  [ls]='ltrim rep:ls:{__rand_int__} 0 799'
  [bk]='zcard rep:bk:{__rand_int__}:7'
  [s6]='zremrangebyrank rep:s6:{__rand_int__} 1 -801'
  [dec]='zremrangebyrank rep:dec:{__rand_int__} 1 -801'
)
for kind in "${kinds[@]}"; do
  say "redis-benchmark: $rounds rounds of $((8 * keys)) inserts and $keys trims, $kind: ${ins_cmd[$kind]}; ${trim_cmd[$kind]} ..."
  isum=0 tsum=0 rsum=0
  for ((r = 0; r < rounds; r++)); do
    # shellcheck disable=SC2086
    bench $((8 * keys)) ${ins_cmd[$kind]}
    isum=$(awk -v a="$isum" -v b="$cpu_us" 'BEGIN { print a + b }')
    rsum=$(awk -v a="$rsum" -v b="$rate" 'BEGIN { print a + b }')
    # shellcheck disable=SC2086
    bench "$keys" ${trim_cmd[$kind]}
    tsum=$(awk -v a="$tsum" -v b="$cpu_us" 'BEGIN { print a + b }')
  done
  ins_us[$kind]=$(awk -v s="$isum" -v r="$rounds" 'BEGIN { printf "%.2f", s / r }')
  ins_rate[$kind]=$(awk -v s="$rsum" -v r="$rounds" 'BEGIN { printf "%.0f", s / r }')
  trim_us[$kind]=$(awk -v s="$tsum" -v r="$rounds" 'BEGIN { printf "%.2f", s / r }')
done
after_lp=$(rcli object encoding "$(key_of lp 0)")
after_sl=$(rcli object encoding "$(key_of sl 0)")
after_rv=$(rcli object encoding "$(key_of rv 0)")
after_len=$(rcli zcard "$(key_of lp 0)")
say "after the inserts: $(key_of lp 0) is a $after_lp of $after_len, $(key_of rv 0) a $after_rv, $(key_of sl 0) a $after_sl"

echo
printf '%-40s %-9s %9s %10s %8s %10s %8s %8s %9s %9s\n' "representation ($keys timelines of $entries)" encoding \
  "insert us" "inserts/s" "trim us" "+trim/8" "B/entry" "used_mem" "page us" "pages/s"
row() {
  local kind=$1 label=$2 rk=${3:-$1}
  awk -v l="$label" -v e="${encoding[$kind]}" -v i="${ins_us[$kind]}" -v ir="${ins_rate[$kind]}" -v t="${trim_us[$kind]}" \
    -v b="${mem_usage[$kind]}" -v u="${mem_used[$kind]}" -v r="${read_us[$rk]}" -v rr="${read_rate[$rk]}" 'BEGIN {
    printf "%-40s %-9s %9.2f %10.0f %8.2f %10.2f %8.1f %8.1f %9.2f %9.0f\n", l, e, i, ir, t, i + t / 8, b, u, r, rr
  }'
}
row lp "sorted set, listpack (today)"
row rv "sorted set, listpack, ~ID members"
row sl "sorted set, skiplist"
row ls "list LPUSHX/LTRIM, page LRANGE 0 39"
row ls "  same, exact page: LRANGE 0 -1" ls_all
row bk "8 buckets of 100 (listpack) + index"
row s6 "sorted set, 6-byte members"
row dec "sorted set, decimal IDs (listpack ints)"
echo "(insert, trim, page: Redis CPU per command; trim is ZREMRANGEBYRANK 1 -801 (800 -2 for ~ID), LTRIM 0 799, or ZCARD of the newest bucket;"
echo " +trim/8: insert plus an eighth of a trim; B/entry: MEMORY USAGE of $sample timelines; used_mem: used_memory added by the fill)"

# The last line is for scripts: insert Redis CPU us/op and MEMORY USAGE bytes per entry.
printf 'representations: listpack_us=%s skiplist_us=%s list_us=%s bucket_us=%s listpack_B=%s skiplist_B=%s list_B=%s bucket_B=%s complement_us=%s complement_B=%s short6_us=%s short6_B=%s decimal_us=%s decimal_B=%s\n' \
  "${ins_us[lp]}" "${ins_us[sl]}" "${ins_us[ls]}" "${ins_us[bk]}" \
  "${mem_usage[lp]}" "${mem_usage[sl]}" "${mem_usage[ls]}" "${mem_usage[bk]}" \
  "${ins_us[rv]}" "${mem_usage[rv]}" "${ins_us[s6]}" "${mem_usage[s6]}" "${ins_us[dec]}" "${mem_usage[dec]}"
