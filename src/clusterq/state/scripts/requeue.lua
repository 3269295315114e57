#!lua
--[[ requeue: put a failed, stopped, canceled or finished job back on its queue to run again.

KEYS[1] pending list
KEYS[2] job key prefix
KEYS[3] failed sorted set
KEYS[4] canceled sorted set
KEYS[5] finished sorted set
KEYS[6] wake channel
KEYS[7] stats hash (the tombstone count; "pseq", the priority sequence)
KEYS[8] history key prefix (kept as long as the record: made permanent with it)
KEYS[9] prio sorted set (a job with a priority goes back to its level, scored as enqueue.lua does)
ARGV[1] job id
ARGV[2] "1" to push at the front, else "0"
Returns: 1 requeued, 0 no such job, -1 the job is queued or running (nothing changed)
]]
local id = ARGV[1]
local key = KEYS[2] .. id
local record = redis.call("HMGET", key, "s", "hk", "te")
local status = record[1]
if not status then return 0 end
if status ~= "failed" and status ~= "canceled" and status ~= "finished" and status ~= "stopped" then return -1 end
redis.call("ZREM", KEYS[3], id)
redis.call("ZREM", KEYS[4], id)
redis.call("ZREM", KEYS[5], id)
redis.call("HSET", key, "s", "queued")
-- The latest result stays: its kind and time, told by the status until now, are written down (hk, ht),
-- and the next outcome moves it to the job's history. A stop request and the progress belong to the run
-- that ended.
local KINDS = {finished = "s", failed = "f", stopped = "t"}
if not record[2] and KINDS[status] and record[3] then
  redis.call("HSET", key, "hk", KINDS[status], "ht", record[3])
end
redis.call("HDEL", key, "ts", "te", "w", "sp", "pg")
redis.call("PERSIST", key)
redis.call("PERSIST", KEYS[8] .. id)
if redis.call("HDEL", key, "tb") == 1 then
  -- Canceled while queued and its id is still in the list: that entry becomes live again.
  redis.call("HINCRBY", KEYS[7], "tomb", -1)
  redis.call("SPUBLISH", KEYS[6], "1")
  return 1
end
local level = tonumber(redis.call("HGET", key, "pr"))
if level then
  local seq = redis.call("HINCRBY", KEYS[7], "pseq", 1)
  redis.call("ZADD", KEYS[9], level * 1099511627776 + 549755813888 + (ARGV[2] == "1" and -seq or seq), id)
  if redis.call("ZCARD", KEYS[9]) == 1 then redis.call("SPUBLISH", KEYS[6], "1") end
  return 1
end
local length
if ARGV[2] == "1" then length = redis.call("LPUSH", KEYS[1], id) else length = redis.call("RPUSH", KEYS[1], id) end
if length == 1 then redis.call("SPUBLISH", KEYS[6], "1") end
return 1
