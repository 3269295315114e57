#!lua
--[[ schedule: create jobs with status "scheduled" and add them to the queue's scheduled set at a run-at time.

Like enqueue, an id that already has a job (in any state) is left untouched, so a retried call cannot
create a second job. The run-at time is either given by the client ("at": milliseconds since the epoch,
from the client's clock) or computed here from the server's clock ("in": a delay in milliseconds), so a
delay never depends on the client's clock. Due jobs are moved to the pending list by promote.lua.
A job with a ttl expires ttl seconds after its run-at time, not after it was scheduled.

KEYS[1] scheduled: scheduled sorted set (score = run-at time, ms)
KEYS[2] job_prefix: job key prefix; job hashes are job_prefix..id and share its hash tag
KEYS[3] wake_channel: wake channel: published with "s" when these jobs become the earliest scheduled, so
        idle workers (which sleep until the next due time they know of) learn of the earlier one at once
ARGV[1] mode: "at" (ms is an absolute time) or "in" (ms is a delay from the server's time)
ARGV[2] ms: milliseconds
ARGV[3] at_front: "1" to push at the front of the queue when the job is promoted, else "0"
ARGV[4..] jobs (12 per job): id, func, payload, options, meta, ttl_s, max_attempts, flag, signature, priority, concurrency_key, headers
          as in enqueue.lua
Returns: {run-at time (ms), then one entry per job: CREATED, EXISTED (a job with that id already existed),
          DUPLICATE (unique only: a job with that id is scheduled, queued, started or deferred)}
Errors (before anything is written): the scheduled set of the wrong type (WRONGTYPE naming it); a mode
         other than "at" or "in", ms not a whole number of ms (within 2^52), a ttl as in enqueue.lua (ERR).
]]
local scheduled = KEYS[1]
local job_prefix = KEYS[2]
local wake_channel = KEYS[3]
local mode = ARGV[1]
local ms = tonumber(ARGV[2])
local at_front = ARGV[3]
local CODE = {CREATED = 1, EXISTED = 0, DUPLICATE = -1}
--!include job_record
--!include now_ms
--!include check_types
--!include check_int
local bad = check_types("schedule", {scheduled, "zset"}) or check_int("schedule", "ms", ms, -4503599627370496, 4503599627370496)
if not bad and mode ~= "at" and mode ~= "in" then bad = "ERR schedule: mode '" .. mode .. "' is not at or in; nothing was written" end
for i = 4, #ARGV, 12 do
  bad = bad or check_int("schedule", "job " .. ARGV[i] .. ": ttl_s", ARGV[i + 5], 0, 3153600000)
end
if bad then return redis.error_reply(bad) end
local now = now_ms()
local run_at = ms
if mode == "in" then run_at = now + run_at end
local LIVE = {queued = true, scheduled = true, started = true, deferred = true}
local out = {run_at}
local zadd = {}
for i = 4, #ARGV, 12 do
  local id = ARGV[i]
  local key = job_prefix .. id
  local flag = ARGV[i + 7]
  if redis.call("EXISTS", key) == 1 then  -- a fresh id too: redis-py may resend the call
    local status = flag == "u" and redis.pcall("HGET", key, "s")
    if type(status) == "string" and LIVE[status] then out[#out + 1] = CODE.DUPLICATE
    else out[#out + 1] = CODE.EXISTED end
  else
    local fields, ttl = job_record("scheduled", now, ARGV, i)
    if at_front == "1" then fields[#fields + 1] = "af"; fields[#fields + 1] = "1" end
    redis.call("HSET", key, unpack(fields))
    if ttl then redis.call("PEXPIREAT", key, math.max(run_at, now) + ttl * 1000) end
    zadd[#zadd + 1] = run_at
    zadd[#zadd + 1] = id
    out[#out + 1] = CODE.CREATED
  end
end
if #zadd > 0 then
  redis.call("ZADD", scheduled, unpack(zadd))
  local first = redis.call("ZRANGE", scheduled, 0, 0, "WITHSCORES")
  if tonumber(first[2]) >= run_at then redis.call("SPUBLISH", wake_channel, "s") end
end
return out
