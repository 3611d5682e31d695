-- Herald's timeline insert: adds post IDs to capped sorted sets and trims
-- each to the newest cap, atomically. KEYS come in pairs: a set, then its
-- rebuild claim (same hash tag, so same slot). ARGV[1] is the cap, ARGV[2]
-- the TTL in milliseconds, ARGV[3] the mode:
--   add     insert, creating the set if it is missing, and renew its TTL,
--           so that a set lasts the TTL after its last write (authors'
--           recent-post lists; home timelines without an active window);
--   store   insert, mark the set complete with its marker member (nine
--           0xff bytes), drop the claim's placeholder member (eight 0xff
--           bytes and a zero; see complete and pending in rediscache.go),
--           renew the TTL and release the claim (a rebuild).
-- (Home timelines with an active window take fan-out writes as plain
-- pipelined commands instead; see Cache.Add.)
-- Then, for each pair, a count n and n members.
local complete = string.rep("\255", 9)
local pending = string.rep("\255", 8) .. "\0"
local cap = tonumber(ARGV[1])
local ttl = ARGV[2]
local mode = ARGV[3]
local a = 4
for k = 1, #KEYS, 2 do
  local key = KEYS[k]
  local n = tonumber(ARGV[a])
  a = a + 1
  if mode == "store" then
    redis.call("ZREM", key, pending)
  end
  local size = redis.call("ZCARD", key)
  do
    -- The members go in from the last to the first, the marker before
    -- them: callers pass them newest first, which is the sets' ascending
    -- order, and ZADD inserts one at a time into a listpack, scanning it
    -- from its head for each member's place. In descending order each
    -- place is the head, found at once: a rebuild's Store of 800 costs
    -- Redis about a third (docs/benchmarks.md, "A rebuild's Store").
    local args = {}
    if mode == "store" then
      args[#args + 1] = 0
      args[#args + 1] = complete
    end
    for i = a + n - 1, a, -1 do
      args[#args + 1] = 0
      args[#args + 1] = ARGV[i]
    end
    local added = 0
    if #args > 0 then
      added = redis.call("ZADD", key, unpack(args))
    end
    -- The last rank is spared: on a complete set it is the marker.
    if size + added > cap + 1 then
      redis.call("ZREMRANGEBYRANK", key, cap, -2)
    end
    redis.call("PEXPIRE", key, ttl)
    if mode == "store" then
      redis.call("DEL", KEYS[k + 1])
    end
  end
  a = a + n
end
return 0
