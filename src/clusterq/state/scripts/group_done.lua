#!lua
--[[ group_done: a member of a group ended; count it once, and fire the group when all have ended.

Idempotent: the counted-members set remembers each member, so a replayed outbox intent counts once.
Firing (once "done" reaches the size fixed by group_close) releases the callback job and gives the
group's keys their time to live.

KEYS[1] group hash
KEYS[2] group's counted-members set
KEYS[3] job key prefix
KEYS[4] deferred sorted set
KEYS[5] pending list
KEYS[6] wake channel
KEYS[7] prio sorted set (a callback with a priority joins it)
KEYS[8] stats hash (field "pseq")
ARGV[1] member handle
ARGV[2] how the member ended ("finished", "ok", "failed", "canceled", "stopped", "deleted", "purge")
Returns: 0 already counted (or no such group), 1 counted, 2 counted and the group is done
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
if redis.call("SADD", KEYS[2], ARGV[1]) == 0 then return 0 end
local done = redis.call("HINCRBY", KEYS[1], "d", 1)
if ARGV[2] ~= "finished" and ARGV[2] ~= "ok" then redis.call("HINCRBY", KEYS[1], "x", 1) end
local size = tonumber(redis.call("HGET", KEYS[1], "t"))
if not size or done < size then return 1 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "te", now)
local keep = redis.call("HGET", KEYS[1], "kp") or "604800000"
redis.call("PEXPIRE", KEYS[1], keep)
redis.call("PEXPIRE", KEYS[2], keep)
local cb = redis.call("HGET", KEYS[1], "cb")
if cb and redis.call("HGET", KEYS[3] .. cb, "s") == "deferred" then
  redis.call("ZREM", KEYS[4], cb)
  redis.call("HSET", KEYS[3] .. cb, "s", "queued")
  local level = tonumber(redis.call("HGET", KEYS[3] .. cb, "pr")) or 0
  if level > 0 then
    local top = redis.call("HINCRBY", KEYS[8], "pseq", 1)
    redis.call("ZADD", KEYS[7], level * 1099511627776 + 549755813888 + top, cb)
    if redis.call("ZCARD", KEYS[7]) == 1 then redis.call("SPUBLISH", KEYS[6], "1") end
  elseif redis.call("RPUSH", KEYS[5], cb) == 1 then
    redis.call("SPUBLISH", KEYS[6], "1")
  end
end
return 2
