#!lua
--[[ group_done: a member of a group ended; count it once, and fire the group when all have ended.

Idempotent: the counted-members set remembers each member, so a replayed outbox intent counts once.
Firing (once "done" reaches the size fixed by group_close) releases the callback job and gives the
group's keys their time to live.

KEYS[1] group: group hash
KEYS[2] group_seen: group's counted-members set
KEYS[3] job_prefix: job key prefix
KEYS[4] deferred: deferred sorted set
KEYS[5] pending: pending list
KEYS[6] wake_channel: wake channel
KEYS[7] prio: prio sorted set (a callback with a priority joins it)
KEYS[8] stats: stats hash (field "pseq")
ARGV[1] member: member handle
ARGV[2] ended: how the member ended ("finished", "ok", "failed", "canceled", "stopped", "deleted", "purge")
Returns: ALREADY_COUNTED (or no such group), COUNTED, DONE (counted and the group is done)
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
local member = ARGV[1]
local ended = ARGV[2]
local CODE = {ALREADY_COUNTED = 0, COUNTED = 1, DONE = 2}
--!include bump
--!include now_ms
--!include push_job
--!include check_types
local bad = check_types("group_done", {group, "hash", group_seen, "set", deferred, "zset", pending, "list", prio, "zset",
                                 stats, "hash"})
if bad then return redis.error_reply(bad) end
if redis.call("EXISTS", group) == 0 then return CODE.ALREADY_COUNTED end
if redis.call("SADD", group_seen, member) == 0 then return CODE.ALREADY_COUNTED end
local done = bump(group, "d", 1)
if ended ~= "finished" and ended ~= "ok" then bump(group, "x", 1) end
local size = tonumber(redis.call("HGET", group, "t"))
if not size or done < size then return CODE.COUNTED end
redis.call("HSET", group, "te", now_ms())
local keep = redis.call("HGET", group, "kp")
if not (keep and string.find(keep, "^%d+$") and #keep <= 13) then keep = "604800000" end
redis.call("PEXPIRE", group, keep)
redis.call("PEXPIRE", group_seen, keep)
local cb = redis.call("HGET", group, "cb")
if cb and redis.pcall("HGET", job_prefix .. cb, "s") == "deferred" then
  redis.call("ZREM", deferred, cb)
  redis.call("HSET", job_prefix .. cb, "s", "queued")
  push_job(cb, tonumber(redis.call("HGET", job_prefix .. cb, "pr")), false,
           {pending = pending, prio = prio, stats = stats, wake = wake_channel})
end
return CODE.DONE
