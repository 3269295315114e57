#!lua flags=allow-oom
--[[ delete: remove a job's record and its entries in every registry of its queue.

A queued job leaves a tombstone in the pending list (see cancel.lua); a started job loses its lease. A
job with dependents writes an outbox intent telling them: "deleted" (they are canceled unless they
allow failure) or "purge" (delete_dependents: they are deleted too).

Runs on a server at maxmemory (flags=allow-oom): it frees memory: deleting jobs is how an operator gets a full server going again.
KEYS[1] job key prefix
KEYS[2] active sorted set
KEYS[3] finished sorted set
KEYS[4] failed sorted set
KEYS[5] canceled sorted set
KEYS[6] stats hash
KEYS[7] scheduled sorted set
KEYS[8] history key prefix (the job's earlier results go with it)
KEYS[9] deferred sorted set
KEYS[10] outbox sorted set
KEYS[11] prio sorted set (a queued job with a priority leaves it: no tombstone)
KEYS[12] pending list (a job set aside by a concurrency limit may come back here)
KEYS[13] wake channel
KEYS[14] running sets prefix (concurrency key -> ids holding its slots)
KEYS[15] waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[16] sorted set of concurrency keys with jobs set aside
ARGV[1] job id
ARGV[2] what dependents are told: "deleted" or "purge"
Returns: 1 deleted, 2 deleted and its dependents are to be told (outbox entry written), 0 no such job
]]
--!include free_slot
local C = {running = KEYS[14], waiting = KEYS[15], keys = KEYS[16], stats = KEYS[6], jobs = KEYS[1], prio = KEYS[11],
           pending = KEYS[12], wake = KEYS[13]}
local key = KEYS[1] .. ARGV[1]
local status = redis.call("HGET", key, "s")
if redis.call("ZREM", KEYS[2], ARGV[1]) == 1 then
  local ck = redis.call("HGET", key, "lk")
  if ck then free_slot(ck, ARGV[1], C) end
end
for i = 3, 5 do redis.call("ZREM", KEYS[i], ARGV[1]) end
redis.call("ZREM", KEYS[7], ARGV[1])
redis.call("ZREM", KEYS[9], ARGV[1])
local notify = status and redis.call("HGET", key, "dd")
if notify then
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call("ZADD", KEYS[10], now, "e\t" .. ARGV[2] .. "\t" .. ARGV[1])
end
if status == "queued" and redis.call("ZREM", KEYS[11], ARGV[1]) == 0 then
  redis.call("HINCRBY", KEYS[6], "tomb", 1)
end
local deleted = redis.call("EXISTS", key)
redis.call("DEL", key, KEYS[8] .. ARGV[1])
if notify then return 2 end
return deleted
