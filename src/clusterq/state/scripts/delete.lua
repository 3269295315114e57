#!lua flags=allow-oom
--[[ delete: remove a job's record and its entries in every registry of its queue.

A queued job leaves a tombstone in the pending list (see cancel.lua); a started job loses its lease. A
job with dependents writes an outbox intent telling them: "deleted" (they are canceled unless they
allow failure) or "purge" (delete_dependents: they are deleted too).

Runs on a server at maxmemory (flags=allow-oom): it frees memory: deleting jobs is how an operator gets a full server going again.
KEYS[1] job_prefix: job key prefix
KEYS[2] active: active sorted set
KEYS[3] finished: finished sorted set
KEYS[4] failed: failed sorted set
KEYS[5] canceled: canceled sorted set
KEYS[6] stats: stats hash
KEYS[7] scheduled: scheduled sorted set
KEYS[8] history_prefix: history key prefix (the job's earlier results go with it)
KEYS[9] deferred: deferred sorted set
KEYS[10] outbox: outbox sorted set
KEYS[11] prio: prio sorted set (a queued job with a priority leaves it: no tombstone)
KEYS[12] pending: pending list (a job set aside by a concurrency limit may come back here)
KEYS[13] wake_channel: wake channel
KEYS[14] limit_running_prefix: running sets prefix (concurrency key -> ids holding its slots)
KEYS[15] limit_waiting_prefix: waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[16] limit_keys: sorted set of concurrency keys with jobs set aside
ARGV[1] job_id: job id
ARGV[2] dependents: what dependents are told: "deleted" or "purge"
Returns: DELETED, NOTIFY (deleted, and its dependents are to be told: outbox entry written), NO_SUCH_JOB
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it: this
         script's keys, the job's concurrency key's running set and waiting list). A job key that is not
         a hash is deleted like any record (deleting is how a broken record is cleared).
]]
local job_prefix = KEYS[1]
local active = KEYS[2]
local finished = KEYS[3]
local failed = KEYS[4]
local canceled = KEYS[5]
local stats = KEYS[6]
local scheduled = KEYS[7]
local history_prefix = KEYS[8]
local deferred = KEYS[9]
local outbox = KEYS[10]
local prio = KEYS[11]
local pending = KEYS[12]
local wake_channel = KEYS[13]
local limit_running_prefix = KEYS[14]
local limit_waiting_prefix = KEYS[15]
local limit_keys = KEYS[16]
local job_id = ARGV[1]
local dependents = ARGV[2]
local CODE = {DELETED = 1, NOTIFY = 2, NO_SUCH_JOB = 0}
--!include bump
--!include check_types
--!include free_slot
--!include now_ms
local C = {running = limit_running_prefix, waiting = limit_waiting_prefix, keys = limit_keys, stats = stats,
           jobs = job_prefix, prio = prio, pending = pending, wake = wake_channel}
local key = job_prefix .. job_id
local bad = check_types("delete", {active, "zset", finished, "zset", failed, "zset", canceled, "zset", stats, "hash",
                                   scheduled, "zset", deferred, "zset", outbox, "zset", prio, "zset", pending, "list",
                                   limit_keys, "zset"})
local record = redis.pcall("HMGET", key, "s", "lk", "dd")
if record.err then record = {} end  -- not a hash: deleted all the same
local status, ck = record[1], record[2]
if ck and not bad then bad = slot_keys_bad("delete", ck, C) end
if bad then return redis.error_reply(bad) end
if redis.call("ZREM", active, job_id) == 1 then
  if ck then free_slot(ck, job_id, C) end
end
for _, registry in ipairs({finished, failed, canceled, scheduled, deferred}) do redis.call("ZREM", registry, job_id) end
local notify = status and record[3]
if notify then redis.call("ZADD", outbox, now_ms(), "e\t" .. dependents .. "\t" .. job_id) end
if status == "queued" and redis.call("ZREM", prio, job_id) == 0 then
  bump(stats, "tomb", 1)
end
local existed = redis.call("EXISTS", key) == 1
redis.call("DEL", key, history_prefix .. job_id)
if notify then return CODE.NOTIFY end
return existed and CODE.DELETED or CODE.NO_SUCH_JOB
