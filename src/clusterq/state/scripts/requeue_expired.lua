#!lua flags=allow-oom
--[[ requeue_expired: recover jobs whose lease ran out (their worker died, hung or lost Redis).

Bounded: handles at most batch jobs per call. A job whose attempts reached its limit is failed as
abandoned, with that reason; the others go back to the head of the queue (of their priority level),
attempt counted, and the lost attempt is recorded as a retried result (kind "r", reason in "e"). Either
way the job's previous result, if any, moves to its history.

Runs on a server at maxmemory (flags=allow-oom): it moves ids back, growing a record by a short reason at
most, so a dead worker's jobs are not stuck.
KEYS[1] active: active sorted set
KEYS[2] pending: pending list
KEYS[3] failed: failed sorted set
KEYS[4] job_prefix: job key prefix
KEYS[5] wake_channel: wake channel
KEYS[6] history_prefix: history key prefix (a recovered job's previous result moves to its history)
KEYS[7] results_channel: results channel (published when someone waits for a recovered job's result)
KEYS[8] outbox: outbox sorted set (an abandoned job with dependents writes "e<TAB>failed<TAB>id" here)
KEYS[9] prio: prio sorted set
KEYS[10] stats: stats hash (field "pseq": the priority sequence)
KEYS[11] limit_running_prefix: running sets prefix (concurrency key -> ids holding its slots)
KEYS[12] limit_waiting_prefix: waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[13] limit_keys: sorted set of concurrency keys with jobs set aside
KEYS[14] control: control hash (concurrency limits "c:<key>", default "cd")
KEYS[15] counts: history hash of this half hour (kinds "retried": requeued, "failed": abandoned; lib/count_minute.lua)
ARGV[1] batch: batch size
ARGV[2] max_attempts: default maximum attempts (a job's own "ma" field wins)
ARGV[3] failure_keep_ms: how long to keep a failed record (ms)
Returns: {number requeued, number failed as abandoned, ms until the earliest lease left in the active set
  expires (-1: none; 0: some are expired already, past this batch), then the ids failed as abandoned (for
  the worker's on_abandoned hooks)}: the worker's next recovery falls due then, so a dead worker's jobs come
  back about when their lease ends, not a maintenance interval later.
Errors (checked before anything is written): a key of the queue of the wrong type (WRONGTYPE naming the
         key: this script's keys, and the history list, running set and waiting list of the jobs it
         recovers); batch, max_attempts or failure_keep_ms not a whole number in range (ERR). A job key
         that is not a hash is dropped from the active set (the lease fails such a record when it meets it);
         a history size "hl" that is not a whole number counts as the default, 10.
]]
local active = KEYS[1]
local pending = KEYS[2]
local failed = KEYS[3]
local job_prefix = KEYS[4]
local wake_channel = KEYS[5]
local history_prefix = KEYS[6]
local results_channel = KEYS[7]
local outbox = KEYS[8]
local prio = KEYS[9]
local stats = KEYS[10]
local limit_running_prefix = KEYS[11]
local limit_waiting_prefix = KEYS[12]
local limit_keys = KEYS[13]
local control = KEYS[14]
local counts = KEYS[15]
local batch = tonumber(ARGV[1])
local max_attempts = tonumber(ARGV[2])
local failure_keep_ms = ARGV[3]
--!include bump
--!include check_types
--!include check_int
--!include free_slot
--!include now_ms
--!include push_back
local MAX_MS = 3153600000000  -- 100 years: clusterq.api.options.MAX_DURATION_S
--!include count_minute
local C = {running = limit_running_prefix, waiting = limit_waiting_prefix, keys = limit_keys, stats = stats,
           jobs = job_prefix, prio = prio, pending = pending, wake = wake_channel}
local bad = check_int("requeue_expired", "batch", batch, 1, 100000)
  or check_int("requeue_expired", "max_attempts", max_attempts, 0, 4503599627370496)
  or check_int("requeue_expired", "failure_keep_ms", failure_keep_ms, 1, MAX_MS)
  or check_types("requeue_expired", {active, "zset", pending, "list", failed, "zset", outbox, "zset", prio, "zset",
                                     stats, "hash", limit_keys, "zset", control, "hash"})
if bad then return redis.error_reply(bad) end
local now = now_ms()
local ids = redis.call("ZRANGE", active, "-inf", now, "BYSCORE", "LIMIT", 0, batch)
-- Read the expired jobs' records first (reads only), with the keys recovering them will write.
local records = {}
for k, id in ipairs(ids) do
  local job = redis.pcall("HMGET", job_prefix .. id, "n", "ma", "w", "rt", "yr", "hk", "hl", "hw", "pr", "lk")
  if job.err then job = {false} end  -- not a hash: dropped from the active set; the lease fails it visibly
  records[k] = job
  if job[10] then bad = bad or slot_keys_bad("requeue_expired", job[10], C) end
  if job[1] and job[6] then bad = bad or check_types("requeue_expired", {history_prefix .. id, "list"}) end
end
-- The concurrency key this call looks at last (below): its running set and waiting list too.
local first_aside = redis.call("ZRANGE", limit_keys, 0, 0)[1]
if first_aside then bad = bad or slot_keys_bad("requeue_expired", first_aside, C) end
if bad then return redis.error_reply(bad) end
local requeued = {}
local prio_jobs = {}  -- {id, level}
local abandoned = {}  -- ids failed as abandoned

-- The job's previous result (kept as hk/ht and r or e) goes to its history, as complete.lua does.
local function push_previous(key, hist, kind, cap_field)
  local prev = redis.call("HMGET", key, "ht", "r", "e")
  local previous = prev[3]
  if kind == "s" then previous = prev[2] end
  -- 10: the default history size (clusterq.state.store.RESULT_HISTORY), also for a malformed "hl"
  local cap = cap_field and string.find(cap_field, "^%d+$") and tonumber(cap_field) or 10
  if cap > 1000 then cap = 1000 end
  if cap > 1 then
    redis.call("LPUSH", hist, kind .. (prev[1] or "0") .. ":" .. (previous or ""))
    redis.call("LTRIM", hist, 0, cap - 2)
    redis.call("HSET", key, "hl", cap)
  end
  redis.call("HDEL", key, "r", "hk", "ht")
end

for k, id in ipairs(ids) do
  redis.call("ZREM", active, id)
  local key = job_prefix .. id
  local job = records[k]
  if job[1] then
    if job[10] then free_slot(job[10], id, C) end
    -- Leases taken for Retry and Repeat runs do not count against the lost-lease limit: only abandoned ones do.
    local attempts = (tonumber(job[1]) or 0) - (tonumber(job[4]) or 0) - (tonumber(job[5]) or 0)
    local limit = tonumber(job[2]) or max_attempts
    local hist = history_prefix .. id
    if job[6] then push_previous(key, hist, job[6], job[7]) end
    if attempts >= limit then
      -- Ended: the status and end time tell the latest result.
      redis.call("HSET", key, "s", "failed", "te", now, "e",
        "abandoned: the lease expired " .. attempts .. " time(s) (last worker: " .. (job[3] or "?") ..
        "); the worker died, hung or lost its connection, and the attempt limit (" .. limit ..
        ") is reached")
      redis.call("PEXPIRE", hist, failure_keep_ms)  -- no-op when the job has no history
      redis.call("PEXPIRE", key, failure_keep_ms)
      redis.call("ZADD", failed, now + tonumber(failure_keep_ms), id)
      if redis.call("HGET", key, "dd") then redis.call("ZADD", outbox, now, "e\tfailed\t" .. id) end
      abandoned[#abandoned + 1] = id
    else
      -- The lost attempt is recorded as a retried result: the job runs again.
      redis.call("HSET", key, "s", "queued", "hk", "r", "ht", now, "e",
        "lease expired (worker: " .. (job[3] or "?") .. "; it died, hung or lost its connection); attempt " ..
        attempts .. " of " .. limit .. ", requeued")
      redis.call("HDEL", key, "ts", "w")
      if job[9] then prio_jobs[#prio_jobs + 1] = {id, tonumber(job[9])} else requeued[#requeued + 1] = id end
    end
    if job[8] then
      redis.call("HDEL", key, "hw")
      redis.call("SPUBLISH", results_channel, id)
    end
  end
end
push_back(requeued, prio_jobs, C)
count_minute(counts, "retried", #requeued + #prio_jobs, now)
count_minute(counts, "failed", #abandoned, now)
-- Concurrency keys with jobs set aside, one per call in turn: drop slots whose job no longer runs and
-- move back as many waiting jobs as there are free slots (all of them, 100 at most, once the key has no
-- limit), so a raised or removed limit, or a slot lost on a path that did not free it, unblocks the key.
local aside = redis.call("ZRANGE", limit_keys, 0, 0)
if aside[1] then
  local ck = aside[1]
  local running = limit_running_prefix .. ck
  local limit = tonumber(redis.call("HGET", control, "c:" .. ck)) or tonumber(redis.call("HGET", control, "cd"))
  for _, member in ipairs(redis.call("SRANDMEMBER", running, 1000)) do
    if redis.pcall("HGET", job_prefix .. member, "s") ~= "started" then redis.call("SREM", running, member) end
  end
  local free = limit and (limit - redis.call("SCARD", running)) or 100
  -- Taken from the head of the key's waiting list, in order, and put back at the head of the queue in
  -- that same order (jobs with a priority at the head of their level).
  local back, back_prio = {}, {}
  local waiting = limit_waiting_prefix .. ck
  local looked = 0
  while #back + #back_prio < math.min(free, 100) and looked < 200 do
    local next_id = redis.call("LPOP", waiting)
    if not next_id then break end
    looked = looked + 1
    bump(stats, "lwait", -1)
    local j = redis.pcall("HMGET", job_prefix .. next_id, "s", "pr", "tb")
    if j.err then j = {"queued", false, false} end  -- not a hash: back to the queue, where the lease fails it
    if j[1] == "queued" then
      if j[2] then back_prio[#back_prio + 1] = {next_id, tonumber(j[2])} else back[#back + 1] = next_id end
    else
      if j[3] then redis.call("HDEL", job_prefix .. next_id, "tb") end
      if j[3] or not j[1] then
        local tomb = tonumber(redis.call("HGET", stats, "tomb")) or 0
        if tomb > 0 then bump(stats, "tomb", -1) end
      end
    end
  end
  local reversed = {}
  for i = #back, 1, -1 do reversed[#reversed + 1] = back[i] end
  push_back(reversed, back_prio, C)
  if redis.call("EXISTS", waiting) == 1 then
    redis.call("ZADD", limit_keys, "XX", now, ck)
  else
    redis.call("ZREM", limit_keys, ck)
  end
end
-- The earliest lease still held: one O(log N) read of the set scored by deadline.
local earliest = redis.call("ZRANGE", active, 0, 0, "WITHSCORES")
local next_in_ms = -1
if earliest[2] then next_in_ms = math.max(0, tonumber(earliest[2]) - now) end
return {#requeued + #prio_jobs, #abandoned, next_in_ms, unpack(abandoned)}
