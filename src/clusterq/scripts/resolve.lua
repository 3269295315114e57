#!lua
--[[ resolve: one parent of a deferred job ended; count it, and release, cancel or delete the job.

Idempotent: the child remembers each parent it counted (field "d:<parent handle>" goes from "w"/"a" to
how the parent ended), so an outbox intent applied twice (a forwarder that died before removing it,
two forwarders at once) counts once. A parent that had to finish ("w") but failed, was canceled or
deleted cancels the child, with a reason naming the parent; "a" (allow_failure) counts it as done.
Released children join the queue (the front if "df"); ended children with dependents of their own write
an outbox intent so the effect cascades.

KEYS[1] job key prefix
KEYS[2] deferred sorted set
KEYS[3] pending list
KEYS[4] wake channel
KEYS[5] canceled sorted set (score = expiry, ms)
KEYS[6] outbox sorted set
KEYS[7] prio sorted set (a released job with a priority joins its level, scored as enqueue.lua does)
KEYS[8] stats hash (field "pseq": the priority sequence)
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
if code == "purge" then
  redis.call("ZREM", KEYS[2], id)
  redis.call("DEL", key)
  if has_dependents then redis.call("ZADD", KEYS[6], now, "e\tdeleted\t" .. id) end
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
local released = redis.call("HMGET", key, "df", "pr")
if released[2] then
  local seq = redis.call("HINCRBY", KEYS[8], "pseq", 1)
  redis.call("ZADD", KEYS[7], tonumber(released[2]) * 1099511627776 + 549755813888 +
    (released[1] == "1" and -seq or seq), id)
  if redis.call("ZCARD", KEYS[7]) == 1 then redis.call("SPUBLISH", KEYS[4], "1") end
  return 2
end
local length
if released[1] == "1" then
  length = redis.call("LPUSH", KEYS[3], id)
else
  length = redis.call("RPUSH", KEYS[3], id)
end
if length == 1 then redis.call("SPUBLISH", KEYS[4], "1") end
return 2
