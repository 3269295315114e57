#!lua
--[[ configure: set or clear fields of a queue's control hash (suspend, rate limit, concurrency limits),
then wake the queue's workers so that they look again at once (after a resume or a raised limit).

KEYS[1] control hash
KEYS[2] wake channel
ARGV[1..] two values per field: name, value ("" deletes the field)
Returns: 1
]]
local set = {}
local del = {}
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == "" then del[#del + 1] = ARGV[i] else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
end
if #del > 0 then redis.call("HDEL", KEYS[1], unpack(del)) end
if #set > 0 then redis.call("HSET", KEYS[1], unpack(set)) end
redis.call("SPUBLISH", KEYS[2], "1")
return 1
