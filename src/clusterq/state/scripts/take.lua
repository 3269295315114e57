#!lua
--[[ take: lease one named queued job out of turn (a queue's synchronous mode runs it in the caller).

Its id stays in the pending list as a tombstone ("tb", counted in stats "tomb"), exactly as a cancel
leaves it: removing it from a long list would cost O(N); the lease script drops it when it gets there.
A job with a priority simply leaves the prio set (O(log N), no tombstone).

KEYS[1] job_prefix: job key prefix
KEYS[2] active: active sorted set (score = lease deadline, ms)
KEYS[3] stats: stats hash (field "tomb")
KEYS[4] prio: prio sorted set
ARGV[1] job_id: job id
ARGV[2] lease_ms: lease length (ms)
ARGV[3] worker: worker name
Returns: the job taken, or {} if it is not queued (gone, or already taken by a worker):
         the job (6 values): token, func, payload, options, headers, retries
         (payload, options and headers "" when absent; retries: failed runs retried so far, "rt")
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it: this
         script's keys and the job's record); a lease_ms that is not a whole number in range (ERR). A record
         whose attempt counter "n" is not a whole number is not taken ({}): a worker's lease fails it.
]]
local job_prefix = KEYS[1]
local active = KEYS[2]
local stats = KEYS[3]
local prio = KEYS[4]
local job_id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local worker = ARGV[3]
--!include bump
--!include now_ms
--!include check_types
--!include check_int
local key = job_prefix .. job_id
local bad = check_int("take", "lease_ms", lease_ms, 0, 3153600000000)
  or check_types("take", {key, "hash", active, "zset", stats, "hash", prio, "zset"})
if bad then return redis.error_reply(bad) end
local job = redis.call("HMGET", key, "s", "f", "p", "o", "n", "x", "tb", "hd", "rt")
if job[1] ~= "queued" or job[7] then return {} end
if job[5] and not (string.find(job[5], "^%d+$") and #job[5] <= 15) then return {} end
local now = now_ms()
local token = (tonumber(job[5]) or 0) + 1
if redis.call("ZREM", prio, job_id) == 1 then
  redis.call("HSET", key, "s", "started", "n", token, "ts", now, "w", worker)
else
  bump(stats, "tomb", 1)
  redis.call("HSET", key, "s", "started", "n", token, "ts", now, "w", worker, "tb", "1")
end
if job[6] then redis.call("PERSIST", key) end
redis.call("ZADD", active, now + lease_ms, job_id)
return {token, job[2] or "", job[3] or "", job[4] or "", job[8] or "", tonumber(job[9]) or 0}
