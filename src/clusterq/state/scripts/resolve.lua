#!lua
--[[ resolve: one parent of a deferred job ended; count it, and release, cancel or delete the job.

Idempotent: the child remembers each parent it counted (field "d:<parent handle>" goes from "w"/"a" to
how the parent ended), so an outbox intent applied twice (a forwarder that died before removing it,
two forwarders at once) counts once. A parent that had to finish ("w") but failed, was canceled or
deleted cancels the child, with a reason naming the parent; "a" (allow_failure) counts it as done.
Released children join the queue as enqueue would put them: the pending list, or the prio sorted set
when they have a priority ("pr"), at the front (of their level) if "df". Ended children with dependents
of their own write an outbox intent so the effect cascades.

KEYS[1] job key prefix
KEYS[2] deferred sorted set
KEYS[3] pending list
KEYS[4] wake channel
KEYS[5] canceled sorted set (score = expiry, ms)
KEYS[6] outbox sorted set
KEYS[7] prio sorted set
KEYS[8] stats hash (field "pseq": the priority sequence)
KEYS[9] results channel (a canceled or deleted child someone waits for is published: it gets no result)
ARGV[1] child job id
ARGV[2] parent handle
ARGV[3] how the parent ended: "finished", "ok" (counts as finished: cancel with enqueue_dependents),
        "failed", "canceled", "stopped", "deleted", or "purge" (delete the child: delete_dependents)
ARGV[4] how long to keep a canceled record when its options say nothing (ms; "-1" = forever)
Returns: 0 nothing done (already counted, no longer deferred, no such child, not its parent),
         1 counted (still waiting for others), 2 released to the queue, 3 canceled, 4 deleted
]]
local id = ARGV[1]
local key = KEYS[1] .. id
if redis.call("HGET", key, "s") ~= "deferred" then return 0 end
local field = "d:" .. ARGV[2]
local mode = redis.call("HGET", key, field)
if mode ~= "w" and mode ~= "a" then return 0 end
local code = ARGV[3]
redis.call("HSET", key, field, code)
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local has_dependents = redis.call("HGET", key, "dd")
local waited = redis.call("HGET", key, "hw")
if code == "purge" then
  redis.call("ZREM", KEYS[2], id)
  redis.call("DEL", key)
  if has_dependents then redis.call("ZADD", KEYS[6], now, "e\tdeleted\t" .. id) end
  if waited then redis.call("SPUBLISH", KEYS[9], id) end
  return 4
end
if not (code == "finished" or code == "ok" or mode == "a") then
  local keep = tonumber(ARGV[4])
  local options = redis.call("HGET", key, "o")
  if options then
    local ok, decoded = pcall(cjson.decode, options)
    if ok and type(decoded) == "table" and tonumber(decoded["failure_ttl"]) then
      keep = math.floor(tonumber(decoded["failure_ttl"]) * 1000)
    end
  end
  redis.call("ZREM", KEYS[2], id)
  if has_dependents then redis.call("ZADD", KEYS[6], now, "e\tcanceled\t" .. id) end
  if waited then
    -- published before the record changes below, but scripts are atomic: the waiter reads the new state
    redis.call("HDEL", key, "hw")
    redis.call("SPUBLISH", KEYS[9], id)
  end
  if keep == 0 then
    redis.call("DEL", key)
    return 3
  end
  redis.call("HSET", key, "s", "canceled", "te", now,
    "e", "canceled: dependency " .. ARGV[2] .. " " .. code .. " (it had to finish; see allow_failure)")
  if keep > 0 then
    redis.call("PEXPIRE", key, keep)
    redis.call("ZADD", KEYS[5], now + keep, id)
  else
    redis.call("PERSIST", key)
    redis.call("ZADD", KEYS[5], "+inf", id)
  end
  return 3
end
if redis.call("HINCRBY", key, "dn", -1) > 0 then return 1 end
redis.call("ZREM", KEYS[2], id)
redis.call("HSET", key, "s", "queued")
local job = redis.call("HMGET", key, "pr", "df")
local level = tonumber(job[1]) or 0
if level > 0 then
  -- As enqueue.lua scores it: level * 2^40 + 2^39 +/- sequence (FIFO within a level).
  local top = redis.call("HINCRBY", KEYS[8], "pseq", 1)
  local offset = job[2] == "1" and -top or top
  redis.call("ZADD", KEYS[7], level * 1099511627776 + 549755813888 + offset, id)
  if redis.call("ZCARD", KEYS[7]) == 1 then redis.call("SPUBLISH", KEYS[4], "1") end
  return 2
end
local length
if job[2] == "1" then length = redis.call("LPUSH", KEYS[3], id) else length = redis.call("RPUSH", KEYS[3], id) end
if length == 1 then redis.call("SPUBLISH", KEYS[4], "1") end
return 2
