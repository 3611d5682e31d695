local key = KEYS[1]
local args = {}
for i = 4, #ARGV do
  args[#args + 1] = 0
  args[#args + 1] = ARGV[i]
end
if ARGV[3] == "1" then
  args[#args + 1] = 0
  args[#args + 1] = ""
end
if #args > 0 then
  redis.call("ZADD", key, unpack(args))
end
redis.call("ZREMRANGEBYRANK", key, 1, -(tonumber(ARGV[1]) + 1))
if ARGV[3] == "1" then
  redis.call("EXPIRE", key, ARGV[2])
else
  redis.call("EXPIRE", key, ARGV[2], "NX")
end
return 0
