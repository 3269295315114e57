#!lua
--[[ group_close: fix a group's size (the members added so far), and its callback; fire now if every
member already ended.

Firing releases the callback (a deferred job of this queue created with no parents) to the queue and
gives the group's keys their time to live. Members that end before the group is closed are counted;
the group fires once "done" reaches the size given here.

KEYS[1] group hash (see group_open.lua)
KEYS[2] group's counted-members set
KEYS[3] job key prefix
KEYS[4] deferred sorted set
KEYS[5] pending list
KEYS[6] wake channel
KEYS[7] prio sorted set (a callback with a priority joins it)
KEYS[8] stats hash (field "pseq")
ARGV[1] callback job id ("" = none)
Returns: 1 closed, 2 closed and done (callback released), 0 no such group, -1 already closed
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local size = tonumber(redis.call("HGET", KEYS[1], "k")) or 0
if redis.call("HSETNX", KEYS[1], "t", size) == 0 then return -1 end
if ARGV[1] ~= "" then redis.call("HSET", KEYS[1], "cb", ARGV[1]) end
if (tonumber(redis.call("HGET", KEYS[1], "d")) or 0) < size then return 1 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "te", now)
local keep = redis.call("HGET", KEYS[1], "kp") or "604800000"
redis.call("PEXPIRE", KEYS[1], keep)
redis.call("PEXPIRE", KEYS[2], keep)
local cb = ARGV[1] ~= "" and ARGV[1]
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
