#!lua
--[[ group_open: create a group's record (a counter of its members' outcomes) in its home queue's slot.

KEYS[1] group hash
ARGV[1] how long to keep the group's keys once all its members ended (ms)
Returns: 1 created, 0 the group already existed
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call("HSETNX", KEYS[1], "c", now) == 0 then return 0 end
redis.call("HSET", KEYS[1], "k", ARGV[1])
return 1
