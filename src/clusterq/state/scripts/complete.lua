#!lua
--[[ complete: record the outcome of leased jobs (a batch, one queue) and end their leases.

Fencing: an outcome is recorded only if the job is still leased with the token the worker presents.
A worker whose lease expired and was taken over cannot overwrite the new attempt. The batch's leases are
checked and ended together (its records' tokens, one ZMSCORE and one ZREM on the active set), and the
entries of the finished and failed registries are written with one ZADD each per call: a plain success
costs the job one HMGET, one HSET and one PEXPIRE. The numbers those write (the end time, the keep's
PEXPIRE argument and registry score) are made into text once per call (per distinct keep_ms), not per
job: Redis converts every Lua number argument to text, which costs about as much as a small command.

The record holds the job's latest result: "r" or "e", and for an ended job its status and "te" say the
rest. A job that runs again (retried, repeated, requeued) keeps its latest result's kind and time in
"hk" (s successful, f failed, t stopped, r retried) and "ht"; when it gets its next result the previous
one is pushed onto the job's history list ("<kind><ms>:<data>", capped; "hl" holds the cap once the list
exists). A job that runs once writes neither. When someone waits for the job's result ("hw" set
by Job.latest_result), its id is published on the results channel; otherwise nothing is published.
A failed job whose record has "rx" (``job.retries_left = n`` wrote it: the retries allowed in all) is not
retried once its "rt" reached it, whatever its plan says.

KEYS[1] active: active sorted set
KEYS[2] finished: finished sorted set (score = expiry, ms; +inf = kept forever)
KEYS[3] failed: failed sorted set (same scoring)
KEYS[4] job_prefix: job key prefix
KEYS[5] scheduled: scheduled sorted set (a retry or repeat with a delay waits here)
KEYS[6] pending: pending list (a retry or repeat without a delay goes back here)
KEYS[7] wake_channel: wake channel
KEYS[8] history_prefix: history key prefix (the job's capped list of earlier results)
KEYS[9] results_channel: results channel
KEYS[10] outbox: outbox sorted set (a job with dependents that ends writes "e<TAB>status<TAB>id" here)
KEYS[11] prio: prio sorted set (a retry or repeat of a job with a priority goes back to its level)
KEYS[12] stats: stats hash (field "pseq": the priority sequence; "retried": failed attempts run again)
KEYS[13] limit_running_prefix: running sets prefix (concurrency key -> ids holding its slots)
KEYS[14] limit_waiting_prefix: waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[15] limit_keys: sorted set of concurrency keys with jobs set aside
KEYS[16] counts: history hash of this half hour (kinds "finished", "failed" (stopped too), "retried"; lib/count_minute.lua)
ARGV[1..] outcomes (8 per job): id, token, status, data, keep_ms, plan, history, note
          status "finished" | "failed" | "stopped", data the result or error text, keep (ms; "-1" =
          forever, "0" = delete the record now), plan ("" or "max;..."), history size (results kept,
          latest included), callback note ("" or why a callback failed).
          plan, for a failed job: Retry; for a finished job: Repeat. "max;ms,ms,..." runs the job again
          after the k-th interval (the last repeats) while its counter ("rt" retries, "yr" repeats) is
          below max; "max;b:base_ms:factor:cap_ms:multiplier" waits min(cap, base * factor^k) * multiplier.
Returns: array with one entry per job: RECORDED, AGAIN (recorded, and the job runs again under its plan),
         NOTIFY (recorded, and its dependents are to be told: an outbox entry was written), LEASE_LOST
         (outcome dropped; also a job key that is not a hash, which the lease turns into a failed record)
Errors (checked before anything is written, so nothing of the batch is recorded): a key of the queue
         of the wrong type (WRONGTYPE naming the key: this script's keys, and the history list, running
         set and waiting list of the jobs it records; the active set is checked by its ZMSCORE, a read
         made before the first write, and only when an outcome's token matches its record); a keep_ms that is not a whole number from -1 to
         3153600000000 (100 years) or a history size that is not 0 to 1000 (ERR naming the job).
         A retry or repeat counter ("rt", "yr") that is not a whole number runs the job no more (its
         outcome is recorded as final); an interval beyond 100 years waits 100 years.
]]
local active = KEYS[1]
local finished = KEYS[2]
local failed = KEYS[3]
local job_prefix = KEYS[4]
local scheduled = KEYS[5]
local pending = KEYS[6]
local wake_channel = KEYS[7]
local history_prefix = KEYS[8]
local results_channel = KEYS[9]
local outbox = KEYS[10]
local prio = KEYS[11]
local stats = KEYS[12]
local limit_running_prefix = KEYS[13]
local limit_waiting_prefix = KEYS[14]
local limit_keys = KEYS[15]
local counts = KEYS[16]
local CODE = {RECORDED = 1, NOTIFY = 2, LEASE_LOST = 0, AGAIN = 3}
--!include bump
--!include check_types
--!include check_int
--!include free_slot
--!include push_job
--!include now_ms
local MAX_MS = 3153600000000  -- 100 years: clusterq.api.options.MAX_DURATION_S
--!include count_minute
local C = {running = limit_running_prefix, waiting = limit_waiting_prefix, keys = limit_keys, stats = stats,
           jobs = job_prefix, prio = prio, pending = pending, wake = wake_channel}
local now = now_ms()

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

-- A whole-number counter ("rt", "yr"), or nil when the record holds something else (HINCRBY would fail).
local function counter_value(raw)
  raw = raw or "0"
  if string.find(raw, "^%d+$") and #raw <= 15 then return tonumber(raw) end
  return nil
end

-- Read-only first pass: every key this call may write has the right type and every number is in range,
-- or nothing is written at all (Redis keeps the writes a script made before an error).
-- Only the keys this batch will write are checked (TYPE, once each): a plain success writes the finished
-- registry (and the active set, which its first ZMSCORE, a read made before any write, checks itself).
local bad = nil
local need, needed = {}, {}
local function want(key, kind)
  if not needed[key] then
    needed[key] = true
    need[#need + 1] = key
    need[#need + 1] = kind
  end
end
local records = {}
local keys = {}
-- A batch's outcomes mostly share their keep_ms and history size: each distinct value is checked once
-- (and its message built only when it is wrong), and a keep's PEXPIRE argument and registry score are
-- made once as text (Redis converts every Lua number argument to text, as costly as a small command).
local keep_num, history_ok = {}, {}
local keep_arg, keep_score = {}, {}
local now_text = string.format("%d", now)
for i = 1, #ARGV, 8 do
  local id, token, status, keep_ms, plan, history = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4], ARGV[i + 5],
    ARGV[i + 6]
  if not keep_num[keep_ms] then
    bad = bad or check_int("complete", "job " .. id .. ": keep_ms", keep_ms, -1, MAX_MS)
    local keep = tonumber(keep_ms) or 0
    keep_num[keep_ms] = keep
    if keep > 0 and not bad then
      keep_arg[keep_ms] = string.format("%d", keep)
      keep_score[keep_ms] = string.format("%d", now + keep)
    end
  end
  if not history_ok[history] then
    bad = bad or check_int("complete", "job " .. id .. ": history", history, 0, 1000)
    history_ok[history] = true
  end
  local key = job_prefix .. id
  keys[#keys + 1] = key
  local job = redis.pcall("HMGET", key, "n", "hk", "hw", "hl", "dd", "lk")
  if job.err then job = false end  -- not a hash: the lease is lost (the lease script fails such a record)
  if job and job[1] == token then
    want(status == "finished" and finished or failed, "zset")
    if plan ~= "" or job[6] then  -- run again, or a freed slot moves a waiting job back to the queue
      want(scheduled, "zset"); want(pending, "list"); want(prio, "zset"); want(stats, "hash")
    end
    if status == "failed" then want(stats, "hash") end
    if job[5] then want(outbox, "zset") end
    if job[6] then
      want(limit_keys, "zset"); want(limit_running_prefix .. job[6], "set"); want(limit_waiting_prefix .. job[6], "list")
    end
    if job[2] then want(history_prefix .. id, "list") end
  end
  records[#records + 1] = job
end
bad = bad or check_types("complete", need)
if bad then return redis.error_reply(bad) end

-- The leases still held: the jobs whose token matches and that are still in the active set, found with
-- one ZMSCORE and ended with one ZREM per slice of the batch (not one ZREM per job). An id given twice
-- ends once: its second outcome is refused as lost, as a second ZREM would have found nothing.
local held = {}
do
  local ids, seen = {}, {}
  for i = 1, #ARGV, 8 do
    local job = records[(i + 7) / 8]
    if job and job[1] == ARGV[i + 1] and not seen[ARGV[i]] then
      seen[ARGV[i]] = true
      ids[#ids + 1] = ARGV[i]
    end
  end
  for from = 1, #ids, 1000 do  -- slices: unpack's stack is bounded
    local slice = {unpack(ids, from, math.min(#ids, from + 999))}
    local scores = redis.pcall("ZMSCORE", active, unpack(slice))
    if scores.err then return redis.error_reply(check_types("complete", {active, "zset"}) or scores.err) end
    local gone = {}
    for k, id in ipairs(slice) do
      if scores[k] then
        held[id] = true
        gone[#gone + 1] = id
      end
    end
    if #gone > 0 then redis.call("ZREM", active, unpack(gone)) end
  end
end
-- Registry entries (score, id), written once per registry at the end.
local ended = {[finished] = {}, [failed] = {}}
local function add_ended(registry, score, id)
  local z = ended[registry]
  z[#z + 1] = score
  z[#z + 1] = id
  if #z >= 1000 then
    redis.call("ZADD", registry, unpack(z))
    ended[registry] = {}
  end
end

local out = {}
local tally = {finished = 0, failed = 0, retried = 0}  -- this call's counts, written once at the end
for i = 1, #ARGV, 8 do
  local id, token, status, data, keep_ms, plan, history, note =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local key = keys[(i + 7) / 8]
  local job = records[(i + 7) / 8]
  if job and job[1] == token and held[id] then
    held[id] = nil
    if job[6] then free_slot(job[6], id, C) end
    local counter, delay = nil, nil
    if plan ~= "" and (status == "failed" or status == "finished") then
      counter = status == "failed" and "rt" or "yr"
      local done = counter_value(redis.call("HGET", key, counter))
      if done then delay = next_delay(plan, done) end
      if delay and delay ~= delay then delay = nil end  -- NaN (a plan of the wrong shape): no more runs
      if delay and delay > MAX_MS then delay = MAX_MS end
      if delay and status == "failed" then
        local cap = tonumber(redis.call("HGET", key, "rx"))
        if cap and done >= cap then delay = nil end
      end
    end
    local field = status == "finished" and "r" or "e"
    local keep = keep_num[keep_ms]
    local hist = (job[2] or job[4] or keep == 0) and history_prefix .. id
    local has_hist = job[4]
    if job[2] then
      -- A second result: the previous one (kind hk, time ht) goes to the history list.
      local cap = tonumber(history) or 10
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
    if note ~= "" then redis.call("HSET", key, "kc", note) end
    if delay then
      -- Retry or Repeat: the job waits its interval, then runs again. Its status no longer tells what
      -- this run's result was, so the kind and time are written (hk, ht).
      redis.call("HDEL", key, "ts", "w")
      redis.call("HINCRBY", key, counter, 1)
      if status == "failed" then bump(stats, "retried", 1) end  -- clusterq info's count
      redis.call("HSET", key, field, data, "hk", status == "failed" and "r" or "s", "ht", now_text,
        "s", delay > 0 and "scheduled" or "queued")
      if delay > 0 then
        redis.call("ZADD", scheduled, now + delay, id)
        local first = redis.call("ZRANGE", scheduled, 0, 0)
        if first[1] == id then redis.call("SPUBLISH", wake_channel, "s") end
      else
        push_job(id, tonumber(redis.call("HGET", key, "pr")), false, C)
      end
    else
      -- An ended job's latest result is its status and end time: nothing more to write.
      local registry = status == "finished" and finished or failed
      if job[5] then redis.call("ZADD", outbox, now_text, "e\t" .. status .. "\t" .. id) end
      if keep == 0 then
        redis.call("DEL", key, hist)
      else
        redis.call("HSET", key, field, data, "s", status, "te", now_text)
        if keep > 0 then
          redis.call("PEXPIRE", key, keep_arg[keep_ms])
          if has_hist then redis.call("PEXPIRE", hist, keep_arg[keep_ms]) end
          add_ended(registry, keep_score[keep_ms], id)
        else
          add_ended(registry, "+inf", id)
        end
      end
    end
    if job[3] then
      -- Someone waits for this job's result; published after the record is written.
      redis.call("HDEL", key, "hw")
      redis.call("SPUBLISH", results_channel, id)
    end
    local kind = status == "finished" and "finished" or (delay and "retried" or "failed")
    tally[kind] = tally[kind] + 1
    if delay then
      out[#out + 1] = CODE.AGAIN
    else
      out[#out + 1] = job[5] and CODE.NOTIFY or CODE.RECORDED
    end
  else
    out[#out + 1] = CODE.LEASE_LOST
  end
end
for registry, z in pairs(ended) do
  if #z > 0 then redis.call("ZADD", registry, unpack(z)) end
end
for kind, n in pairs(tally) do count_minute(counts, kind, n, now) end
return out
