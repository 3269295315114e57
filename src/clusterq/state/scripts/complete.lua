#!lua
--[[ complete: record the outcome of leased jobs (a batch, one queue) and end their leases.

Fencing: an outcome is recorded only if the job is still leased with the token the worker presents.
A worker whose lease expired and was taken over cannot overwrite the new attempt.

The record holds the job's latest result: "r" or "e", and for an ended job its status and "te" say the
rest. A job that runs again (retried, repeated, requeued) keeps its latest result's kind and time in
"hk" (s successful, f failed, t stopped, r retried) and "ht"; when it gets its next result the previous
one is pushed onto the job's history list ("<kind><ms>:<data>", capped; "hl" holds the cap once the list
exists). A job that runs once writes neither. When someone waits for the job's result ("hw" set
by Job.latest_result), its id is published on the results channel; otherwise nothing is published.
A failed job whose record has "rx" (``job.retries_left = n`` wrote it: the retries allowed in all) is not
retried once its "rt" reached it, whatever its plan says.

KEYS[1] active sorted set
KEYS[2] finished sorted set (score = expiry, ms; +inf = kept forever)
KEYS[3] failed sorted set (same scoring)
KEYS[4] job key prefix
KEYS[5] scheduled sorted set (a retry or repeat with a delay waits here)
KEYS[6] pending list (a retry or repeat without a delay goes back here)
KEYS[7] wake channel
KEYS[8] history key prefix (the job's capped list of earlier results)
KEYS[9] results channel
KEYS[10] outbox sorted set (a job with dependents that ends writes "e<TAB>status<TAB>id" here)
KEYS[11] prio sorted set (a retry or repeat of a job with a priority goes back to its level)
KEYS[12] stats hash (field "pseq": the priority sequence; "retried": failed attempts run again)
KEYS[13] running sets prefix (concurrency key -> ids holding its slots)
KEYS[14] waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[15] sorted set of concurrency keys with jobs set aside
ARGV[1..] eight values per job: id, token, status ("finished" | "failed" | "stopped"), data (result or
          error text), keep (ms; "-1" = forever, "0" = delete the record now), plan ("" or "max;..."),
          history size (results kept, latest included), callback note ("" or why a callback failed).
          plan, for a failed job: Retry; for a finished job: Repeat. "max;ms,ms,..." runs the job again
          after the k-th interval (the last repeats) while its counter ("rt" retries, "yr" repeats) is
          below max; "max;b:base_ms:factor:cap_ms:multiplier" waits min(cap, base * factor^k) * multiplier.
Returns: array with one entry per job: 1 recorded (or run again), 2 recorded and its dependents are to be
         told (an outbox entry was written), 0 lease lost (outcome dropped)
]]
--!include free_slot
local C = {running = KEYS[13], waiting = KEYS[14], keys = KEYS[15], stats = KEYS[12], jobs = KEYS[4],
           prio = KEYS[11], pending = KEYS[6], wake = KEYS[7]}
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Delay (ms) before the next run under `plan` after `done` earlier ones, or nil when none is left.
local function next_delay(plan, done)
  local max, rest = string.match(plan, "^(%d+);(.*)$")
  if not max or done >= tonumber(max) then return nil end
  local base, factor, cap, mult = string.match(rest, "^b:(%d+):([%d.]+):(%d+):([%d.]+)$")
  if base then
    local delay = tonumber(base) * tonumber(factor) ^ done
    if delay > tonumber(cap) then delay = tonumber(cap) end
    return math.floor(delay * tonumber(mult))
  end
  local list = {}
  for ms in string.gmatch(rest, "%d+") do list[#list + 1] = tonumber(ms) end
  return list[done + 1] or list[#list] or 0
end

local out = {}
for i = 1, #ARGV, 8 do
  local id, status, data, plan = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 5]
  local key = KEYS[4] .. id
  local job = redis.call("HMGET", key, "n", "hk", "hw", "hl", "dd", "lk")
  if job[1] == ARGV[i + 1] and redis.call("ZREM", KEYS[1], id) == 1 then
    if job[6] then free_slot(job[6], id, C) end
    local counter, delay = nil, nil
    if plan ~= "" and (status == "failed" or status == "finished") then
      counter = status == "failed" and "rt" or "yr"
      local done = tonumber(redis.call("HGET", key, counter)) or 0
      delay = next_delay(plan, done)
      if delay and status == "failed" then
        local cap = tonumber(redis.call("HGET", key, "rx"))
        if cap and done >= cap then delay = nil end
      end
    end
    local field = status == "finished" and "r" or "e"
    local hist = KEYS[8] .. id
    local has_hist = job[4]
    if job[2] then
      -- A second result: the previous one (kind hk, time ht) goes to the history list.
      local cap = tonumber(ARGV[i + 6]) or 10
      if cap > 1 then
        local prev = redis.call("HMGET", key, "ht", "r", "e")
        local previous = prev[3]
        if job[2] == "s" then previous = prev[2] end
        redis.call("LPUSH", hist, job[2] .. (prev[1] or "0") .. ":" .. (previous or ""))
        redis.call("LTRIM", hist, 0, cap - 2)
        if not has_hist then redis.call("HSET", key, "hl", cap) end
        has_hist = true
      end
      redis.call("HDEL", key, "hk", "ht", field == "r" and "e" or "r")
    end
    if ARGV[i + 7] ~= "" then redis.call("HSET", key, "kc", ARGV[i + 7]) end
    if delay then
      -- Retry or Repeat: the job waits its interval, then runs again. Its status no longer tells what
      -- this run's result was, so the kind and time are written (hk, ht).
      redis.call("HDEL", key, "ts", "w")
      redis.call("HINCRBY", key, counter, 1)
      if status == "failed" then redis.call("HINCRBY", KEYS[12], "retried", 1) end  -- clusterq info's count
      redis.call("HSET", key, field, data, "hk", status == "failed" and "r" or "s", "ht", now,
        "s", delay > 0 and "scheduled" or "queued")
      if delay > 0 then
        redis.call("ZADD", KEYS[5], now + delay, id)
        local first = redis.call("ZRANGE", KEYS[5], 0, 0)
        if first[1] == id then redis.call("SPUBLISH", KEYS[7], "s") end
      else
        local level = tonumber(redis.call("HGET", key, "pr"))
        if level then
          local seq = redis.call("HINCRBY", KEYS[12], "pseq", 1)
          redis.call("ZADD", KEYS[11], level * 1099511627776 + 549755813888 + seq, id)
          if redis.call("ZCARD", KEYS[11]) == 1 then redis.call("SPUBLISH", KEYS[7], "1") end
        elseif redis.call("RPUSH", KEYS[6], id) == 1 then
          redis.call("SPUBLISH", KEYS[7], "1")
        end
      end
    else
      -- An ended job's latest result is its status and end time: nothing more to write.
      local keep = tonumber(ARGV[i + 4])
      local registry = status == "finished" and KEYS[2] or KEYS[3]
      if job[5] then redis.call("ZADD", KEYS[10], now, "e\t" .. status .. "\t" .. id) end
      if keep == 0 then
        redis.call("DEL", key, hist)
      else
        redis.call("HSET", key, field, data, "s", status, "te", now)
        if keep > 0 then
          redis.call("PEXPIRE", key, keep)
          if has_hist then redis.call("PEXPIRE", hist, keep) end
          redis.call("ZADD", registry, now + keep, id)
        else
          redis.call("ZADD", registry, "+inf", id)
        end
      end
    end
    if job[3] then
      -- Someone waits for this job's result; published after the record is written.
      redis.call("HDEL", key, "hw")
      redis.call("SPUBLISH", KEYS[9], id)
    end
    out[#out + 1] = (job[5] and not delay) and 2 or 1
  else
    out[#out + 1] = 0
  end
end
return out
