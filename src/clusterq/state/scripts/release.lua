#!lua flags=allow-oom
--[[ release: give leased jobs back to the head of their queue without counting the attempt.

Used when a worker stops: jobs it had prefetched but not started, and (on a second stop signal) the job
it was running. Order is kept: the first id given ends up first in the queue (jobs with a priority: first
in their level of the prio set, scored as enqueue.lua does).

Runs on a server at maxmemory (flags=allow-oom): it moves ids back without growing anything, so a stopping worker hands its jobs back.
KEYS[1] pending: pending list
KEYS[2] active: active sorted set
KEYS[3] job_prefix: job key prefix
KEYS[4] wake_channel: wake channel
KEYS[5] prio: prio sorted set
KEYS[6] stats: stats hash (field "pseq": the priority sequence)
KEYS[7] limit_running_prefix: running sets prefix (concurrency key -> ids holding its slots)
KEYS[8] limit_waiting_prefix: waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[9] limit_keys: sorted set of concurrency keys with jobs set aside
ARGV[1..] leases (2 per job): id, token
Returns: number of jobs released (a job whose lease was lost is skipped, as is a job key that is not a hash)
Errors (checked before anything is written): a key of the queue of the wrong type (WRONGTYPE naming the
         key: this script's keys, and the running set and waiting list of the jobs it releases).
]]
local pending = KEYS[1]
local active = KEYS[2]
local job_prefix = KEYS[3]
local wake_channel = KEYS[4]
local prio = KEYS[5]
local stats = KEYS[6]
local limit_running_prefix = KEYS[7]
local limit_waiting_prefix = KEYS[8]
local limit_keys = KEYS[9]
--!include bump
--!include check_types
--!include free_slot
--!include push_back
local C = {running = limit_running_prefix, waiting = limit_waiting_prefix, keys = limit_keys, stats = stats,
           jobs = job_prefix, prio = prio, pending = pending, wake = wake_channel}
local bad = check_types("release", {pending, "list", active, "zset", prio, "zset", stats, "hash", limit_keys, "zset"})
local records = {}
for i = #ARGV - 1, 1, -2 do
  local job = redis.pcall("HMGET", job_prefix .. ARGV[i], "n", "pr", "lk")
  if job.err then job = {false} end  -- not a hash: its lease is lost
  records[i] = job
  if job[3] then bad = bad or slot_keys_bad("release", job[3], C) end
end
if bad then return redis.error_reply(bad) end
local released = {}
local prio_jobs = {}  -- {id, level}, in the order given
for i = #ARGV - 1, 1, -2 do
  local id, token = ARGV[i], tonumber(ARGV[i + 1])
  local key = job_prefix .. id
  local job = records[i]
  if job[1] and tonumber(job[1]) == token and redis.call("ZREM", active, id) == 1 then
    redis.call("HSET", key, "s", "queued", "n", token - 1)
    redis.call("HDEL", key, "ts", "w")
    if job[3] then free_slot(job[3], id, C) end
    if job[2] then table.insert(prio_jobs, 1, {id, tonumber(job[2])}) else released[#released + 1] = id end
  end
end
push_back(released, prio_jobs, C)
return #released + #prio_jobs
