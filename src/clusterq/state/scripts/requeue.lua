#!lua
--[[ requeue: put a failed, stopped, canceled or finished job back on its queue to run again.

KEYS[1] pending: pending list
KEYS[2] job_prefix: job key prefix
KEYS[3] failed: failed sorted set
KEYS[4] canceled: canceled sorted set
KEYS[5] finished: finished sorted set
KEYS[6] wake_channel: wake channel
KEYS[7] stats: stats hash (the tombstone count; "pseq", the priority sequence)
KEYS[8] history_prefix: history key prefix (kept as long as the record: made permanent with it)
KEYS[9] prio: prio sorted set (a job with a priority goes back to its level, scored as enqueue.lua does)
ARGV[1] job_id: job id
ARGV[2] at_front: "1" to push at the front, else "0"
Returns: REQUEUED, NO_SUCH_JOB, NOT_ENDED (the job is queued or running: nothing changed)
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it: this
         script's keys and the job's record).
]]
local pending = KEYS[1]
local job_prefix = KEYS[2]
local failed = KEYS[3]
local canceled = KEYS[4]
local finished = KEYS[5]
local wake_channel = KEYS[6]
local stats = KEYS[7]
local history_prefix = KEYS[8]
local prio = KEYS[9]
local job_id = ARGV[1]
local at_front = ARGV[2] == "1"
local CODE = {REQUEUED = 1, NO_SUCH_JOB = 0, NOT_ENDED = -1}
--!include bump
--!include push_job
--!include check_types
local id = job_id
local key = job_prefix .. id
local bad = check_types("requeue", {key, "hash", pending, "list", failed, "zset", canceled, "zset", finished, "zset",
                                    stats, "hash", prio, "zset"})
if bad then return redis.error_reply(bad) end
local record = redis.call("HMGET", key, "s", "hk", "te")
local status = record[1]
if not status then return CODE.NO_SUCH_JOB end
if status ~= "failed" and status ~= "canceled" and status ~= "finished" and status ~= "stopped" then
  return CODE.NOT_ENDED
end
redis.call("ZREM", failed, id)
redis.call("ZREM", canceled, id)
redis.call("ZREM", finished, id)
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
redis.call("PERSIST", history_prefix .. id)
if redis.call("HDEL", key, "tb") == 1 then
  -- Canceled while queued and its id is still in the list: that entry becomes live again.
  bump(stats, "tomb", -1)
  redis.call("SPUBLISH", wake_channel, "1")
  return CODE.REQUEUED
end
push_job(id, tonumber(redis.call("HGET", key, "pr")), at_front,
         {pending = pending, prio = prio, stats = stats, wake = wake_channel})
return CODE.REQUEUED
