#!lua
--[[ promote: move due scheduled jobs (run-at <= the server's time) to the pending list, a bounded batch.

Any number of workers may call this at once: the ZREM of an id decides which call promotes it, so a
job is promoted exactly once. Each promoted job gets status "queued"; an id whose job is gone (deleted,
ttl expired) or no longer scheduled (canceled) is dropped from the set without being pushed. Jobs
scheduled with at_front go to the head of the queue (of their priority level; jobs with a priority go to
the prio set, scored as enqueue.lua does). The wake channel is published when the pending list (or the
prio set) goes from empty to non-empty, as enqueue does.

KEYS[1] scheduled: scheduled sorted set (score = run-at time, ms)
KEYS[2] pending: pending list
KEYS[3] job_prefix: job key prefix
KEYS[4] wake_channel: wake channel (sharded pub/sub, same hash tag)
KEYS[5] prio: prio sorted set
KEYS[6] stats: stats hash (field "pseq": the priority sequence)
ARGV[1] batch: maximum number of jobs to promote
Returns: {jobs promoted, run-at time (ms) of the earliest job still scheduled or -1 if none,
          the server's time (ms)}
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it); a batch
         that is not a whole number from 1 to 100000 (ERR). A due job whose key is not a hash, or whose
         record has no status, goes to the pending list all the same: the lease turns it into a failed
         record that says why, instead of it being dropped unseen.
]]
local scheduled = KEYS[1]
local pending = KEYS[2]
local job_prefix = KEYS[3]
local wake_channel = KEYS[4]
local prio = KEYS[5]
local stats = KEYS[6]
local batch = tonumber(ARGV[1])
--!include bump
--!include now_ms
--!include prio_score
--!include check_types
--!include check_int
local bad = check_int("promote", "batch", batch, 1, 100000)
  or check_types("promote", {scheduled, "zset", pending, "list", prio, "zset", stats, "hash"})
if bad then return redis.error_reply(bad) end
local now = now_ms()
local ids = redis.call("ZRANGE", scheduled, "-inf", now, "BYSCORE", "LIMIT", 0, batch)
local back = {}
local front = {}
local prio_jobs = {}  -- {id, level, at_front} triples
for _, id in ipairs(ids) do
  if redis.call("ZREM", scheduled, id) == 1 then
    local key = job_prefix .. id
    local job = redis.pcall("HMGET", key, "s", "af", "pr")
    if job.err or (not job[1] and redis.call("EXISTS", key) == 1) then
      back[#back + 1] = id  -- malformed: the lease fails it with a reason
    elseif job[1] == "scheduled" then
      redis.call("HSET", key, "s", "queued")
      if job[2] then redis.call("HDEL", key, "af") end
      if job[3] then
        prio_jobs[#prio_jobs + 1] = {id, tonumber(job[3]), job[2] and true or false}
      elseif job[2] then
        front[#front + 1] = id
      else
        back[#back + 1] = id
      end
    end
  end
end
local promoted = #back + #front + #prio_jobs
local length = 0
if #back > 0 then length = redis.call("RPUSH", pending, unpack(back)) end
if #front > 0 then
  local reversed = {}
  for i = #front, 1, -1 do reversed[#reversed + 1] = front[i] end
  length = redis.call("LPUSH", pending, unpack(reversed))
end
if #back + #front > 0 and length == #back + #front then redis.call("SPUBLISH", wake_channel, "1") end
if #prio_jobs > 0 then
  local top = bump(stats, "pseq", #prio_jobs)
  local zadd = {}
  for k, entry in ipairs(prio_jobs) do
    zadd[#zadd + 1] = prio_score(entry[2], entry[3] and (k - 1 - top) or (top - #prio_jobs + k))
    zadd[#zadd + 1] = entry[1]
  end
  redis.call("ZADD", prio, unpack(zadd))
  if redis.call("ZCARD", prio) == #prio_jobs then redis.call("SPUBLISH", wake_channel, "1") end
end
local first = redis.call("ZRANGE", scheduled, 0, 0, "WITHSCORES")
local next_at = -1
if first[2] then next_at = tonumber(first[2]) end
return {promoted, next_at, now}
