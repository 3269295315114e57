#!lua flags=allow-oom
--[[ cancel: mark a job canceled so that no worker runs it (again).

A queued job stays in the pending list as a tombstone (removing it from a long list would cost O(N));
the lease script drops it and releases the tombstone. A started job loses its lease: the worker running
it can no longer record an outcome. A scheduled job leaves the scheduled set, so it is never promoted; a
deferred one leaves the deferred set. A job with dependents writes an outbox intent telling them how it
ended: "canceled" (they are canceled in turn, unless they allow failure) or "ok" (enqueue_dependents).

Runs on a server at maxmemory (flags=allow-oom): it adds little and lets an operator stop jobs on a full server (keep time 0 frees the record).
KEYS[1] job_prefix: job key prefix
KEYS[2] canceled: canceled sorted set (score = expiry, ms)
KEYS[3] active: active sorted set
KEYS[4] stats: stats hash
KEYS[5] scheduled: scheduled sorted set
KEYS[6] history_prefix: history key prefix (kept as long as the record)
KEYS[7] deferred: deferred sorted set
KEYS[8] outbox: outbox sorted set
KEYS[9] prio: prio sorted set (a queued job with a priority is removed from it: O(log N), no tombstone)
KEYS[10] pending: pending list (a job set aside by a concurrency limit may come back here)
KEYS[11] wake_channel: wake channel
KEYS[12] limit_running_prefix: running sets prefix (concurrency key -> ids holding its slots)
KEYS[13] limit_waiting_prefix: waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[14] limit_keys: sorted set of concurrency keys with jobs set aside
KEYS[15] results_channel: results channel (published when someone waits for the job's result: latest_result wakes up)
ARGV[1] job_id: job id
ARGV[2] keep_ms: how long to keep the canceled record (ms; "-1" = forever, "0" = delete it now)
ARGV[3] dependents: what dependents are told: "canceled", or "ok" to release them as if it had finished
Returns: CANCELED, NOTIFY (canceled, and its dependents are to be told: outbox entry written),
         NO_SUCH_JOB, ALREADY_ENDED (finished, failed or canceled; status unchanged)
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it: this
         script's keys, the job's record, its concurrency key's running set and waiting list); a keep_ms
         that is not a whole number from -1 to 100 years (ERR).
]]
local job_prefix = KEYS[1]
local canceled = KEYS[2]
local active = KEYS[3]
local stats = KEYS[4]
local scheduled = KEYS[5]
local history_prefix = KEYS[6]
local deferred = KEYS[7]
local outbox = KEYS[8]
local prio = KEYS[9]
local pending = KEYS[10]
local wake_channel = KEYS[11]
local limit_running_prefix = KEYS[12]
local limit_waiting_prefix = KEYS[13]
local limit_keys = KEYS[14]
local results_channel = KEYS[15]
local job_id = ARGV[1]
local keep_ms = tonumber(ARGV[2])
local dependents = ARGV[3]
local CODE = {CANCELED = 1, NOTIFY = 2, NO_SUCH_JOB = 0, ALREADY_ENDED = -1}
--!include bump
--!include check_types
--!include check_int
--!include free_slot
--!include now_ms
local C = {running = limit_running_prefix, waiting = limit_waiting_prefix, keys = limit_keys, stats = stats,
           jobs = job_prefix, prio = prio, pending = pending, wake = wake_channel}
local key = job_prefix .. job_id
local bad = check_int("cancel", "keep_ms", keep_ms, -1, 3153600000000)
  or check_types("cancel", {key, "hash", canceled, "zset", active, "zset", stats, "hash", scheduled, "zset",
                            deferred, "zset", outbox, "zset", prio, "zset", pending, "list", limit_keys, "zset"})
local ck = not bad and redis.call("HGET", key, "lk")
if ck then bad = slot_keys_bad("cancel", ck, C) end
if bad then return redis.error_reply(bad) end
local status = redis.call("HGET", key, "s")
if not status then return CODE.NO_SUCH_JOB end
if status == "finished" or status == "failed" or status == "canceled" then return CODE.ALREADY_ENDED end
if status == "queued" and redis.call("ZREM", prio, job_id) == 0 then
  -- The id stays in the pending list as a tombstone; "tb" marks that it is still there.
  bump(stats, "tomb", 1)
  redis.call("HSET", key, "tb", "1")
end
if redis.call("ZREM", active, job_id) == 1 then
  -- a running job gives up its concurrency slot now: its outcome will be dropped anyway
  if ck then free_slot(ck, job_id, C) end
end
if status == "scheduled" then redis.call("ZREM", scheduled, job_id) end
if status == "deferred" then redis.call("ZREM", deferred, job_id) end
local now = now_ms()
local notify = redis.call("HGET", key, "dd")
if notify then redis.call("ZADD", outbox, now, "e\t" .. dependents .. "\t" .. job_id) end
local done = notify and CODE.NOTIFY or CODE.CANCELED
-- A canceled job gets no result: wake whoever waits for one (published before the record changes below;
-- scripts are atomic, so the waiter reads the new state either way).
local waited = redis.call("HGET", key, "hw")
if waited then redis.call("SPUBLISH", results_channel, job_id) end
if keep_ms == 0 then
  redis.call("DEL", key, history_prefix .. job_id)  -- failure_ttl=0: keep no record (a queued id's tombstone is released by lease)
  return done
end
redis.call("HSET", key, "s", "canceled", "te", now)
if waited then redis.call("HDEL", key, "hw") end
if keep_ms > 0 then
  redis.call("PEXPIRE", key, keep_ms)
  redis.call("PEXPIRE", history_prefix .. job_id, keep_ms)  -- no-op when the job has no history
  redis.call("ZADD", canceled, now + keep_ms, job_id)
else
  redis.call("PERSIST", key)
  redis.call("ZADD", canceled, "+inf", job_id)
end
return done
