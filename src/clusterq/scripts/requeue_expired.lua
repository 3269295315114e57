#!lua flags=allow-oom
--[[ requeue_expired: recover jobs whose lease ran out (their worker died, hung or lost Redis).

Bounded: handles at most ARGV[1] jobs per call. A job whose attempts reached its limit is failed as
abandoned, with that reason; the others go back to the head of the queue (of their priority level),
attempt counted.

Runs on a server at maxmemory (flags=allow-oom): it moves ids back without growing anything, so a dead worker's jobs are not stuck.
KEYS[1] active sorted set
KEYS[2] pending list
KEYS[3] failed sorted set
KEYS[4] job key prefix
KEYS[5] wake channel
KEYS[6] history key prefix (an abandoned job's previous result moves to its history)
KEYS[7] results channel (published when someone waits for the abandoned job's result)
KEYS[8] outbox sorted set (an abandoned job with dependents writes "e<TAB>failed<TAB>id" here)
KEYS[9] prio sorted set
KEYS[10] stats hash (field "pseq": the priority sequence)
ARGV[1] batch size
ARGV[2] default maximum attempts (a job's own "ma" field wins)
ARGV[3] how long to keep a failed record (ms)
Returns: {number requeued, number failed as abandoned}
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call("ZRANGE", KEYS[1], "-inf", now, "BYSCORE", "LIMIT", 0, tonumber(ARGV[1]))
local requeued = {}
local prio = {}  -- {id, level}
local failed = 0
for _, id in ipairs(ids) do
  redis.call("ZREM", KEYS[1], id)
  local key = KEYS[4] .. id
  local job = redis.call("HMGET", key, "n", "ma", "w", "rt", "yr", "hk", "hl", "hw", "pr")
  if job[1] then
    -- Leases taken for Retry and Repeat runs do not count against the lost-lease limit: only abandoned ones do.
    local attempts = (tonumber(job[1]) or 0) - (tonumber(job[4]) or 0) - (tonumber(job[5]) or 0)
    local limit = tonumber(job[2]) or tonumber(ARGV[2])
    if attempts >= limit then
      local hist = KEYS[6] .. id
      if job[6] then
        -- It ran before (Retry, Repeat, requeue): that result goes to the history, as complete does.
        local prev = redis.call("HMGET", key, "ht", "r", "e")
        local previous = prev[3]
        if job[6] == "s" then previous = prev[2] end
        local cap = tonumber(job[7]) or 10  -- 10: the default history size (clusterq.job.RESULT_HISTORY)
        if cap > 1 then
          redis.call("LPUSH", hist, job[6] .. (prev[1] or "0") .. ":" .. (previous or ""))
          redis.call("LTRIM", hist, 0, cap - 2)
          redis.call("HSET", key, "hl", cap)
        end
        redis.call("HDEL", key, "r", "hk", "ht")  -- ended: the status and end time tell the latest result
      end
      redis.call("HSET", key, "s", "failed", "te", now, "e",
        "abandoned: the lease expired " .. attempts .. " time(s) (last worker: " .. (job[3] or "?") ..
        "); the worker died, hung or lost its connection, and the attempt limit (" .. limit ..
        ") is reached")
      redis.call("PEXPIRE", hist, ARGV[3])  -- no-op when the job has no history
      if job[8] then
        redis.call("HDEL", key, "hw")
        redis.call("SPUBLISH", KEYS[7], id)
      end
      redis.call("PEXPIRE", key, ARGV[3])
      redis.call("ZADD", KEYS[3], now + tonumber(ARGV[3]), id)
      if redis.call("HGET", key, "dd") then redis.call("ZADD", KEYS[8], now, "e\tfailed\t" .. id) end
      failed = failed + 1
    else
      redis.call("HSET", key, "s", "queued")
      redis.call("HDEL", key, "ts", "w")
      if job[9] then prio[#prio + 1] = {id, tonumber(job[9])} else requeued[#requeued + 1] = id end
    end
  end
end
if #requeued > 0 then
  local length = redis.call("LPUSH", KEYS[2], unpack(requeued))
  if length == #requeued then redis.call("SPUBLISH", KEYS[5], "1") end
end
if #prio > 0 then
  local top = redis.call("HINCRBY", KEYS[10], "pseq", #prio)
  local zadd = {}
  for k, entry in ipairs(prio) do
    zadd[#zadd + 1] = entry[2] * 1099511627776 + 549755813888 + k - 1 - top
    zadd[#zadd + 1] = entry[1]
  end
  redis.call("ZADD", KEYS[9], unpack(zadd))
  if redis.call("ZCARD", KEYS[9]) == #prio then redis.call("SPUBLISH", KEYS[5], "1") end
end
return {#requeued + #prio, failed}
