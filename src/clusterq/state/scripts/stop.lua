#!lua flags=allow-oom
--[[ stop: ask the worker running a job to stop it now.

The reason is stored on the job ("sp"), which the worker's heartbeat also reports, and published on the
queue's wake channel, which the worker serving the queue already listens to: it interrupts the job at
once and records it as stopped (never retried). Only a job that is started and still leased can be
stopped; a queued or scheduled one is canceled instead. Allowed when the server is at maxmemory
(flags=allow-oom): stopping a runaway job is one way out of a full server, and the write is one small field.

KEYS[1] job_prefix: job key prefix
KEYS[2] active: active sorted set
KEYS[3] wake_channel: wake channel
ARGV[1] job_id: job id
ARGV[2] reason: reason (text)
Returns: STOP_REQUESTED, NO_SUCH_JOB, NOT_RUNNING (the job is not running; status unchanged)
Errors: the job's record or the active set of the wrong type (WRONGTYPE naming it; nothing written).
]]
local job_prefix = KEYS[1]
local active = KEYS[2]
local wake_channel = KEYS[3]
local job_id = ARGV[1]
local reason = ARGV[2]
local CODE = {STOP_REQUESTED = 1, NO_SUCH_JOB = 0, NOT_RUNNING = -1}
--!include check_types
local key = job_prefix .. job_id
local bad = check_types("stop", {key, "hash", active, "zset"})
if bad then return redis.error_reply(bad) end
local status = redis.call("HGET", key, "s")
if not status then return CODE.NO_SUCH_JOB end
if status ~= "started" or not redis.call("ZSCORE", active, job_id) then return CODE.NOT_RUNNING end
redis.call("HSET", key, "sp", reason)
redis.call("SPUBLISH", wake_channel, "x" .. cjson.encode({job_id, reason}))
return CODE.STOP_REQUESTED
