#!lua
--[[ resolve: one parent of a deferred job ended; count it, and release, cancel or delete the job.

Idempotent: the child remembers each parent it counted (field "d:<parent handle>" goes from "w"/"a" to
how the parent ended), so an outbox intent applied twice (a forwarder that died before removing it,
two forwarders at once) counts once. A parent that had to finish ("w") but failed, was canceled or
deleted cancels the child, with a reason naming the parent; "a" (allow_failure) counts it as done.
Released children join the queue as enqueue would put them: the pending list, or the prio sorted set
when they have a priority ("pr"), at the front (of their level) if "df". Ended children with dependents
of their own write an outbox intent so the effect cascades.

KEYS[1] job_prefix: job key prefix
KEYS[2] deferred: deferred sorted set
KEYS[3] pending: pending list
KEYS[4] wake_channel: wake channel
KEYS[5] canceled: canceled sorted set (score = expiry, ms)
KEYS[6] outbox: outbox sorted set
KEYS[7] prio: prio sorted set
KEYS[8] stats: stats hash (field "pseq": the priority sequence)
KEYS[9] results_channel: results channel (a canceled or deleted child someone waits for is published: it gets no result)
ARGV[1] child_id: child job id
ARGV[2] parent_handle: parent handle
ARGV[3] ended: how the parent ended: "finished", "ok" (counts as finished: cancel with enqueue_dependents),
        "failed", "canceled", "stopped", "deleted", or "purge" (delete the child: delete_dependents)
ARGV[4] failure_keep_ms: how long to keep a canceled record when its options say nothing (ms; "-1" = forever)
Returns: NOTHING (already counted, no longer deferred, no such child, not its parent), COUNTED (still
         waiting for others), RELEASED (to the queue), CANCELED, DELETED
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it: this
         script's keys and the child's record); a failure_keep_ms that is not a whole number from -1 to
         100 years (ERR). A failure_ttl in the child's options out of that range (an old or forged record)
         counts as failure_keep_ms; a count of parents awaited ("dn") that is not a whole number releases
         the child when this parent counts.
]]
local job_prefix = KEYS[1]
local deferred = KEYS[2]
local pending = KEYS[3]
local wake_channel = KEYS[4]
local canceled = KEYS[5]
local outbox = KEYS[6]
local prio = KEYS[7]
local stats = KEYS[8]
local results_channel = KEYS[9]
local child_id = ARGV[1]
local parent_handle = ARGV[2]
local ended = ARGV[3]
local failure_keep_ms = tonumber(ARGV[4])
local CODE = {NOTHING = 0, COUNTED = 1, RELEASED = 2, CANCELED = 3, DELETED = 4}
--!include now_ms
--!include push_job
--!include check_types
--!include check_int
local id = child_id
local key = job_prefix .. id
local bad = check_int("resolve", "failure_keep_ms", failure_keep_ms, -1, 3153600000000)
  or check_types("resolve", {key, "hash", deferred, "zset", pending, "list", canceled, "zset", outbox, "zset",
                             prio, "zset", stats, "hash"})
if bad then return redis.error_reply(bad) end
if redis.call("HGET", key, "s") ~= "deferred" then return CODE.NOTHING end
local field = "d:" .. parent_handle
local mode = redis.call("HGET", key, field)
if mode ~= "w" and mode ~= "a" then return CODE.NOTHING end
redis.call("HSET", key, field, ended)
local now = now_ms()
local has_dependents = redis.call("HGET", key, "dd")
local waited = redis.call("HGET", key, "hw")
if ended == "purge" then
  redis.call("ZREM", deferred, id)
  redis.call("DEL", key)
  if has_dependents then redis.call("ZADD", outbox, now, "e\tdeleted\t" .. id) end
  if waited then redis.call("SPUBLISH", results_channel, id) end
  return CODE.DELETED
end
if not (ended == "finished" or ended == "ok" or mode == "a") then
  local keep = failure_keep_ms
  local options = redis.call("HGET", key, "o")
  if options then
    local ok, decoded = pcall(cjson.decode, options)
    local ttl = ok and type(decoded) == "table" and tonumber(decoded["failure_ttl"])
    -- only a value PEXPIRE takes (an old or forged record may hold 1e20 or NaN): else the default
    if ttl and ttl == ttl and ttl >= -1 and ttl <= 3153600000 then keep = math.floor(ttl * 1000) end
    if keep < 0 then keep = -1 end
  end
  redis.call("ZREM", deferred, id)
  if has_dependents then redis.call("ZADD", outbox, now, "e\tcanceled\t" .. id) end
  if waited then
    -- published before the record changes below, but scripts are atomic: the waiter reads the new state
    redis.call("HDEL", key, "hw")
    redis.call("SPUBLISH", results_channel, id)
  end
  if keep == 0 then
    redis.call("DEL", key)
    return CODE.CANCELED
  end
  redis.call("HSET", key, "s", "canceled", "te", now,
    "e", "canceled: dependency " .. parent_handle .. " " .. ended .. " (it had to finish; see allow_failure)")
  if keep > 0 then
    redis.call("PEXPIRE", key, keep)
    redis.call("ZADD", canceled, now + keep, id)
  else
    redis.call("PERSIST", key)
    redis.call("ZADD", canceled, "+inf", id)
  end
  return CODE.CANCELED
end
local awaited = redis.call("HGET", key, "dn")
if awaited and string.find(awaited, "^%d+$") and redis.call("HINCRBY", key, "dn", -1) > 0 then return CODE.COUNTED end
redis.call("ZREM", deferred, id)
redis.call("HSET", key, "s", "queued")
local job = redis.call("HMGET", key, "pr", "df")
-- Joins the queue as enqueue would put it: its level of the prio set, or the pending list; "df" at the front.
push_job(id, tonumber(job[1]), job[2] == "1", {pending = pending, prio = prio, stats = stats, wake = wake_channel})
return CODE.RELEASED
