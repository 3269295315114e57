#!lua flags=allow-oom
--[[ cancel: mark a job canceled so that no worker runs it (again).

A queued job stays in the pending list as a tombstone (removing it from a long list would cost O(N));
the lease script drops it and releases the tombstone. A started job loses its lease: the worker running
it can no longer record an outcome. A scheduled job leaves the scheduled set, so it is never promoted; a
deferred one leaves the deferred set. A job with dependents writes an outbox intent telling them how it
ended: "canceled" (they are canceled in turn, unless they allow failure) or "ok" (enqueue_dependents).

Runs on a server at maxmemory (flags=allow-oom): it adds little and lets an operator stop jobs on a full server (keep time 0 frees the record).
KEYS[1] job key prefix
KEYS[2] canceled sorted set (score = expiry, ms)
KEYS[3] active sorted set
KEYS[4] stats hash
KEYS[5] scheduled sorted set
KEYS[6] history key prefix (kept as long as the record)
KEYS[7] deferred sorted set
KEYS[8] outbox sorted set
KEYS[9] prio sorted set (a queued job with a priority is removed from it: O(log N), no tombstone)
KEYS[10] pending list (a job set aside by a concurrency limit may come back here)
KEYS[11] wake channel
KEYS[12] running sets prefix (concurrency key -> ids holding its slots)
KEYS[13] waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[14] sorted set of concurrency keys with jobs set aside
KEYS[15] results channel (published when someone waits for the job's result: latest_result wakes up)
ARGV[1] job id
ARGV[2] how long to keep the canceled record (ms; "-1" = forever, "0" = delete it now)
ARGV[3] what dependents are told: "canceled", or "ok" to release them as if it had finished
Returns: 1 canceled, 2 canceled and its dependents are to be told (outbox entry written), 0 no such job, -1 already finished, failed or canceled (status unchanged)
]]
--!include free_slot
local C = {running = KEYS[12], waiting = KEYS[13], keys = KEYS[14], stats = KEYS[4], jobs = KEYS[1], prio = KEYS[9],
           pending = KEYS[10], wake = KEYS[11]}
local key = KEYS[1] .. ARGV[1]
local status = redis.call("HGET", key, "s")
if not status then return 0 end
if status == "finished" or status == "failed" or status == "canceled" then return -1 end
if status == "queued" and redis.call("ZREM", KEYS[9], ARGV[1]) == 0 then
  -- The id stays in the pending list as a tombstone; "tb" marks that it is still there.
  redis.call("HINCRBY", KEYS[4], "tomb", 1)
  redis.call("HSET", key, "tb", "1")
end
if redis.call("ZREM", KEYS[3], ARGV[1]) == 1 then
  -- a running job gives up its concurrency slot now: its outcome will be dropped anyway
  local ck = redis.call("HGET", key, "lk")
  if ck then free_slot(ck, ARGV[1], C) end
end
if status == "scheduled" then redis.call("ZREM", KEYS[5], ARGV[1]) end
if status == "deferred" then redis.call("ZREM", KEYS[7], ARGV[1]) end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local notify = redis.call("HGET", key, "dd")
if notify then redis.call("ZADD", KEYS[8], now, "e\t" .. ARGV[3] .. "\t" .. ARGV[1]) end
-- A canceled job gets no result: wake whoever waits for one (published after the record changes below;
-- scripts are atomic, so the waiter reads the new state either way).
local waited = redis.call("HGET", key, "hw")
if waited then redis.call("SPUBLISH", KEYS[15], ARGV[1]) end
local keep = tonumber(ARGV[2])
if keep == 0 then
  redis.call("DEL", key, KEYS[6] .. ARGV[1])  -- failure_ttl=0: keep no record (a queued id's tombstone is released by lease)
  return notify and 2 or 1
end
redis.call("HSET", key, "s", "canceled", "te", now)
if waited then redis.call("HDEL", key, "hw") end
if keep > 0 then
  redis.call("PEXPIRE", key, keep)
  redis.call("PEXPIRE", KEYS[6] .. ARGV[1], keep)  -- no-op when the job has no history
  redis.call("ZADD", KEYS[2], now + keep, ARGV[1])
else
  redis.call("PERSIST", key)
  redis.call("ZADD", KEYS[2], "+inf", ARGV[1])
end
return notify and 2 or 1
