#!lua flags=allow-oom
--[[ requeue_expired: recover jobs whose lease ran out (their worker died, hung or lost Redis).

Bounded: handles at most ARGV[1] jobs per call. A job whose attempts reached its limit is failed as
abandoned, with that reason; the others go back to the head of the queue, attempt counted.

Runs on a server at maxmemory (flags=allow-oom): it moves ids back without growing anything, so a dead worker's jobs are not stuck.
KEYS[1] active sorted set
KEYS[2] pending list
KEYS[3] failed sorted set
KEYS[4] job key prefix
KEYS[5] wake channel
ARGV[1] batch size
ARGV[2] default maximum attempts (a job's own "ma" field wins)
ARGV[3] how long to keep a failed record (ms)
Returns: {number requeued, number failed as abandoned}
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call("ZRANGE", KEYS[1], "-inf", now, "BYSCORE", "LIMIT", 0, tonumber(ARGV[1]))
local requeued = {}
local failed = 0
for _, id in ipairs(ids) do
  redis.call("ZREM", KEYS[1], id)
  local key = KEYS[4] .. id
  local job = redis.call("HMGET", key, "n", "ma", "w", "rt")
  if job[1] then
    -- Leases taken for Retry runs do not count against the lost-lease limit: only abandoned ones do.
    local attempts = (tonumber(job[1]) or 0) - (tonumber(job[4]) or 0)
    local limit = tonumber(job[2]) or tonumber(ARGV[2])
    if attempts >= limit then
      redis.call("HSET", key, "s", "failed", "te", now, "e",
        "abandoned: the lease expired " .. attempts .. " time(s) (last worker: " .. (job[3] or "?") ..
        "); the worker died, hung or lost its connection, and the attempt limit (" .. limit ..
        ") is reached")
      redis.call("PEXPIRE", key, ARGV[3])
      redis.call("ZADD", KEYS[3], now + tonumber(ARGV[3]), id)
      failed = failed + 1
    else
      redis.call("HSET", key, "s", "queued")
      redis.call("HDEL", key, "ts", "w")
      requeued[#requeued + 1] = id
    end
  end
end
if #requeued > 0 then
  local length = redis.call("LPUSH", KEYS[2], unpack(requeued))
  if length == #requeued then redis.call("SPUBLISH", KEYS[5], "1") end
end
return {#requeued, failed}
