#!lua
--[[ group_open: create a group's record in its home queue's slot, or add to its member count.

KEYS[1] group: group hash (fields: c created, kp keep ms, k members added, t size once closed, d members
        ended, x of which did not finish, cb callback job id, te done at)
ARGV[1] keep_ms: how long to keep the group's keys once all its members ended (ms; used when creating)
ARGV[2] added: members added ("0" to create the group)
Returns: CREATED, EXISTED (already existed, or the members were added), NO_SUCH_GROUP (members added to a
         group that does not exist)
Errors (before anything is written): the group key not a hash (WRONGTYPE naming it); keep_ms or added not
         a whole number in range (ERR).
]]
local group = KEYS[1]
local keep_ms = ARGV[1]
local added = tonumber(ARGV[2])
local CODE = {CREATED = 1, EXISTED = 0, NO_SUCH_GROUP = -1}
--!include bump
--!include now_ms
--!include check_types
--!include check_int
local bad = check_types("group_open", {group, "hash"}) or check_int("group_open", "keep_ms", keep_ms, 0, 3153600000000)
  or check_int("group_open", "added", added, 0, 1000000000)
if bad then return redis.error_reply(bad) end
local exists = redis.call("EXISTS", group)
if added > 0 then
  if exists == 0 then return CODE.NO_SUCH_GROUP end
  bump(group, "k", added)
  return CODE.EXISTED
end
if exists == 1 then return CODE.EXISTED end
redis.call("HSET", group, "c", now_ms(), "kp", keep_ms, "k", 0)
return CODE.CREATED
