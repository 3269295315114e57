#!lua
--[[ cron_tick: enqueue one tick of a periodic job, exactly once whatever the number of schedulers.

The queue's cron hash holds, per periodic job, the last tick taken. A tick is taken only if it is newer
than that one, so every scheduler can offer every tick and only the first offer of each runs; an older
or equal tick (a slower scheduler, a replayed call) changes nothing. A tick later than the server's
clock is refused ("early"), so a scheduler whose clock runs ahead cannot run a job before its time.
The job is created as enqueue.lua creates it (a change to one must go to the other), with an id derived from (name, tick): an id that already
has a record is not created again (a second guard). Each run is pushed on the job's capped list of
recent runs.

Mode "manual" runs the job once now for an operator ("run now", see periodic.request_run): the request is
the ms stored in run_now; the call names it in tick_ms and takes it only if it is still there (so of any
number of schedulers offering it, one enqueues it), deleting it. The last tick is neither read nor moved,
the overlap flag is ignored (an operator asked for it) and the server's clock is not compared.

KEYS[1] cron: cron hash (field = periodic job name, value = last tick taken, ms)
KEYS[2] cron_runs: recent runs list of this periodic job ("<tick ms> <job id>", newest first)
KEYS[3] pending: pending list
KEYS[4] job_prefix: job key prefix; job hashes are job_prefix..id and share its hash tag
KEYS[5] wake_channel: wake channel (sharded pub/sub, same hash tag)
KEYS[6] prio: prio sorted set (jobs with a priority, as in enqueue.lua)
KEYS[7] stats: stats hash (field "pseq": the priority sequence)
KEYS[8] run_now: this periodic job's pending run-now request (string: the request's ms)
ARGV[1] name: periodic job name
ARGV[2] tick_ms: tick (ms since the epoch); in mode "manual" the run-now request's ms
ARGV[3] mode: "fire": run the tick if it is new; "resume": the same, but a job seen for the first time only
        records the tick (a new declaration does not run for a tick that passed before it existed);
        "skip": record the tick without running it (missed ticks are not caught up); "manual": take the
        run-now request tick_ms (see above)
ARGV[4] keep_runs: number of recent runs kept
ARGV[5] id: the job's id; ARGV[5..16] are the job as in enqueue.lua, with the overlap flag in the slot of
        enqueue's id flag
ARGV[6] func: function path
ARGV[7] payload: payload ("" = none)
ARGV[8] options: options JSON ("" = none)
ARGV[9] meta: meta ("" = none)
ARGV[10] ttl_s: ttl in seconds ("0" = none)
ARGV[11] max_attempts: maximum attempts ("" = the worker's default)
ARGV[12] overlap: "0": do not run while the previous run has not ended (queued, started, scheduled for a
        retry or deferred): the tick is recorded, not run; "1": runs may overlap
ARGV[13] signature: the job's signature ("" = unsigned; stored as "sg", see signing.py)
ARGV[14] priority: priority ("0" = none, else 1..9, lower runs first)
ARGV[15] concurrency_key: concurrency key ("" = none)
ARGV[16] headers: headers JSON ("" = none; stored as "hd", see api/hooks.py)
Returns: {code, server time (ms), last tick taken before this call (ms, -1 = none)}; code ENQUEUED,
         TAKEN (tick already taken, or its job id already existed), RECORDED (recorded without running),
         EARLY, OVERLAP (recorded without running because the previous run has not ended); in mode
         "manual": ENQUEUED, or TAKEN (the request is gone: another scheduler took it)
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it; run_now only
         in mode "manual"); tick_ms,
         keep_runs or the ttl not a whole number in range (ERR). A last tick in the cron hash that is not a
         number counts as none (the tick is taken and the field repaired).
]]
local cron = KEYS[1]
local cron_runs = KEYS[2]
local pending = KEYS[3]
local job_prefix = KEYS[4]
local wake_channel = KEYS[5]
local prio = KEYS[6]
local stats = KEYS[7]
local run_now = KEYS[8]
local name = ARGV[1]
local tick_ms = ARGV[2]
local mode = ARGV[3]
local keep_runs = tonumber(ARGV[4])
local id = ARGV[5]
local func = ARGV[6]  -- the job's values are also read by job_record, by position
local payload = ARGV[7]
local options = ARGV[8]
local meta = ARGV[9]
local ttl_s = ARGV[10]
local max_attempts = ARGV[11]
local overlap = ARGV[12]
local signature = ARGV[13]
local priority = tonumber(ARGV[14]) or 0
local concurrency_key = ARGV[15]
local headers = ARGV[16]
local CODE = {ENQUEUED = 1, TAKEN = 0, RECORDED = 2, EARLY = 3, OVERLAP = 4}
--!include job_record
--!include now_ms
--!include push_job
--!include check_types
--!include check_int
local typed = {cron, "hash", cron_runs, "list", pending, "list", prio, "zset", stats, "hash"}
-- run_now only in mode "manual": a request key edited by hand must not stop the job's ticks.
if mode == "manual" then typed[#typed + 1] = run_now; typed[#typed + 1] = "string" end
local bad = check_types("cron_tick", typed)
  or check_int("cron_tick", "tick_ms", tick_ms, -4503599627370496, 4503599627370496)
  or check_int("cron_tick", "keep_runs", keep_runs, 1, 1000000000)
  or check_int("cron_tick", "job " .. id .. ": ttl_s", ttl_s, 0, 3153600000)
if bad then return redis.error_reply(bad) end
local now = now_ms()
local tick = tonumber(tick_ms)
local last = tonumber(redis.call("HGET", cron, name) or "-1") or -1
if mode == "manual" then
  if redis.call("GET", run_now) ~= tick_ms then return {CODE.TAKEN, now, last} end
  redis.call("DEL", run_now)
else
  if tick > now then return {CODE.EARLY, now, last} end
  if tick <= last then return {CODE.TAKEN, now, last} end
  redis.call("HSET", cron, name, tick_ms)
  if mode == "skip" or (mode == "resume" and last < 0) then return {CODE.RECORDED, now, last} end
  if overlap == "0" then
    local previous = redis.call("LINDEX", cron_runs, 0)
    if previous then
      local previous_id = string.sub(previous, string.find(previous, " ", 1, true) + 1)
      local status = redis.pcall("HGET", job_prefix .. previous_id, "s")
      if status == "queued" or status == "started" or status == "scheduled" or status == "deferred" then
        return {CODE.OVERLAP, now, last}
      end
    end
  end
end
local key = job_prefix .. id
if redis.call("EXISTS", key) == 1 then return {CODE.TAKEN, now, last} end
local fields, ttl = job_record("queued", now, ARGV, 5)
redis.call("HSET", key, unpack(fields))
if ttl then redis.call("EXPIRE", key, ttl) end
-- At the back of its level or of the pending list, as enqueue.lua puts a job.
push_job(id, priority, false, {pending = pending, prio = prio, stats = stats, wake = wake_channel})
redis.call("LPUSH", cron_runs, tick_ms .. " " .. id)
redis.call("LTRIM", cron_runs, 0, keep_runs - 1)
return {CODE.ENQUEUED, now, last}
