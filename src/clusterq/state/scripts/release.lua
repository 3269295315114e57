#!lua flags=allow-oom
--[[ release: give leased jobs back to the head of their queue without counting the attempt.

Used when a worker stops: jobs it had prefetched but not started, and (on a second stop signal) the job
it was running. Order is kept: the first id given ends up first in the queue (jobs with a priority: first
in their level of the prio set, scored as enqueue.lua does).

Runs on a server at maxmemory (flags=allow-oom): it moves ids back without growing anything, so a stopping worker hands its jobs back.
KEYS[1] pending list
KEYS[2] active sorted set
KEYS[3] job key prefix
KEYS[4] wake channel
KEYS[5] prio sorted set
KEYS[6] stats hash (field "pseq": the priority sequence)
KEYS[7] running sets prefix (concurrency key -> ids holding its slots)
KEYS[8] waiting lists prefix (concurrency key -> ids set aside by the lease)
KEYS[9] sorted set of concurrency keys with jobs set aside
ARGV[1..] two values per job: id, token
Returns: number of jobs released (a job whose lease was lost is skipped)
]]
--!include free_slot
local C = {running = KEYS[7], waiting = KEYS[8], keys = KEYS[9], stats = KEYS[6], jobs = KEYS[3], prio = KEYS[5],
           pending = KEYS[1], wake = KEYS[4]}
local released = {}
local prio = {}  -- {id, level}, in the order given
for i = #ARGV - 1, 1, -2 do
  local id = ARGV[i]
  local key = KEYS[3] .. id
  local token = tonumber(ARGV[i + 1])
  local job = redis.call("HMGET", key, "n", "pr", "lk")
  if tonumber(job[1]) == token and redis.call("ZREM", KEYS[2], id) == 1 then
    redis.call("HSET", key, "s", "queued", "n", token - 1)
    redis.call("HDEL", key, "ts", "w")
    if job[3] then free_slot(job[3], id, C) end
    if job[2] then table.insert(prio, 1, {id, tonumber(job[2])}) else released[#released + 1] = id end
  end
end
if #released > 0 then
  local length = redis.call("LPUSH", KEYS[1], unpack(released))
  if length == #released then redis.call("SPUBLISH", KEYS[4], "1") end
end
if #prio > 0 then
  local top = redis.call("HINCRBY", KEYS[6], "pseq", #prio)
  local zadd = {}
  for k, entry in ipairs(prio) do
    zadd[#zadd + 1] = entry[2] * 1099511627776 + 549755813888 + k - 1 - top
    zadd[#zadd + 1] = entry[1]
  end
  redis.call("ZADD", KEYS[5], unpack(zadd))
  if redis.call("ZCARD", KEYS[5]) == #prio then redis.call("SPUBLISH", KEYS[4], "1") end
end
return #released + #prio
