#!lua
--[[ take: lease one named queued job out of turn (a queue's synchronous mode runs it in the caller).

Its id stays in the pending list as a tombstone ("tb", counted in stats "tomb"), exactly as a cancel
leaves it: removing it from a long list would cost O(N); the lease script drops it when it gets there.
A job with a priority simply leaves the prio set (O(log N), no tombstone).

KEYS[1] job key prefix
KEYS[2] active sorted set (score = lease deadline, ms)
KEYS[3] stats hash (field "tomb")
KEYS[4] prio sorted set
ARGV[1] job id
ARGV[2] lease length (ms)
ARGV[3] worker name
Returns: {token, function, payload, options, headers, retries done} (payload, options and headers ""
         when absent), or {} if the job is
         not queued (gone, or already taken by a worker)
]]
local key = KEYS[1] .. ARGV[1]
local job = redis.call("HMGET", key, "s", "f", "p", "o", "n", "x", "tb", "hd", "rt")
if job[1] ~= "queued" or job[7] then return {} end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = (tonumber(job[5]) or 0) + 1
if redis.call("ZREM", KEYS[4], ARGV[1]) == 1 then
  redis.call("HSET", key, "s", "started", "n", token, "ts", now, "w", ARGV[3])
else
  redis.call("HINCRBY", KEYS[3], "tomb", 1)
  redis.call("HSET", key, "s", "started", "n", token, "ts", now, "w", ARGV[3], "tb", "1")
end
if job[6] then redis.call("PERSIST", key) end
redis.call("ZADD", KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return {token, job[2] or "", job[3] or "", job[4] or "", job[8] or "", job[9] or 0}
