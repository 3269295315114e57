#!lua
--[[ group_close: fix a group's size (the members added so far), and its callback; fire now if every
member already ended.

Firing releases the callback (a deferred job of this queue created with no parents) to the queue and
gives the group's keys their time to live. Members that end before the group is closed are counted;
the group fires once "done" reaches the size given here.

KEYS[1] group: group hash (see group_open.lua)
KEYS[2] group_seen: group's counted-members set
KEYS[3] job_prefix: job key prefix
KEYS[4] deferred: deferred sorted set
KEYS[5] pending: pending list
KEYS[6] wake_channel: wake channel
KEYS[7] prio: prio sorted set (a callback with a priority joins it)
KEYS[8] stats: stats hash (field "pseq")
ARGV[1] callback_id: callback job id ("" = none)
Returns: CLOSED, DONE (closed and done: callback released), NO_SUCH_GROUP, ALREADY_CLOSED
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it). A keep
         time "kp" in the group's record that PEXPIRE would refuse counts as the default, 7 days.
]]
local group = KEYS[1]
local group_seen = KEYS[2]
local job_prefix = KEYS[3]
local deferred = KEYS[4]
local pending = KEYS[5]
local wake_channel = KEYS[6]
local prio = KEYS[7]
local stats = KEYS[8]
local callback_id = ARGV[1]
local CODE = {CLOSED = 1, DONE = 2, NO_SUCH_GROUP = 0, ALREADY_CLOSED = -1}
--!include now_ms
--!include push_job
--!include check_types
local bad = check_types("group_close", {group, "hash", group_seen, "set", deferred, "zset", pending, "list", prio, "zset",
                                 stats, "hash"})
if bad then return redis.error_reply(bad) end
if redis.call("EXISTS", group) == 0 then return CODE.NO_SUCH_GROUP end
local size = tonumber(redis.call("HGET", group, "k")) or 0
if redis.call("HSETNX", group, "t", size) == 0 then return CODE.ALREADY_CLOSED end
if callback_id ~= "" then redis.call("HSET", group, "cb", callback_id) end
if (tonumber(redis.call("HGET", group, "d")) or 0) < size then return CODE.CLOSED end
redis.call("HSET", group, "te", now_ms())
local keep = redis.call("HGET", group, "kp")
if not (keep and string.find(keep, "^%d+$") and #keep <= 13) then keep = "604800000" end
redis.call("PEXPIRE", group, keep)
redis.call("PEXPIRE", group_seen, keep)
local cb = callback_id ~= "" and callback_id
if cb and redis.pcall("HGET", job_prefix .. cb, "s") == "deferred" then
  redis.call("ZREM", deferred, cb)
  redis.call("HSET", job_prefix .. cb, "s", "queued")
  push_job(cb, tonumber(redis.call("HGET", job_prefix .. cb, "pr")), false,
           {pending = pending, prio = prio, stats = stats, wake = wake_channel})
end
return CODE.DONE
