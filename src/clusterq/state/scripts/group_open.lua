#!lua
--[[ group_open: create a group's record in its home queue's slot, or add to its member count.

KEYS[1] group: group hash (fields: c created, kp keep ms, k members added, t size once closed, d members
        ended, x of which did not finish, cb callback job id, te done at)
ARGV[1] keep_ms: how long to keep the group's keys once all its members ended (ms; used when creating)
ARGV[2] added: members added ("0" to create the group)
Returns: CREATED, EXISTED (already existed, or the members were added), NO_SUCH_GROUP (members added to a
         group that does not exist)
]]
local group = KEYS[1]
local keep_ms = ARGV[1]
local added = tonumber(ARGV[2])
local CODE = {CREATED = 1, EXISTED = 0, NO_SUCH_GROUP = -1}
--!include now_ms
local exists = redis.call("EXISTS", group)
if added > 0 then
  if exists == 0 then return CODE.NO_SUCH_GROUP end
  redis.call("HINCRBY", group, "k", added)
  return CODE.EXISTED
end
if exists == 1 then return CODE.EXISTED end
redis.call("HSET", group, "c", now_ms(), "kp", keep_ms, "k", 0)
return CODE.CREATED
