#!lua
--[[ group_open: create a group's record in its home queue's slot, or add to its member count.

KEYS[1] group hash (fields: c created, kp keep ms, k members added, t size once closed, d members
        ended, x of which did not finish, cb callback job id, te done at)
ARGV[1] how long to keep the group's keys once all its members ended (ms; used when creating)
ARGV[2] members added ("0" to create the group)
Returns: 1 created, 0 already existed or members added, -1 members added to a group that does not exist
]]
local exists = redis.call("EXISTS", KEYS[1])
if tonumber(ARGV[2]) > 0 then
  if exists == 0 then return -1 end
  redis.call("HINCRBY", KEYS[1], "k", ARGV[2])
  return 0
end
if exists == 1 then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "c", now, "kp", ARGV[1], "k", 0)
return 1
