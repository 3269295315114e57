#!lua
--[[ promote: move due scheduled jobs (run-at <= the server's time) to the pending list, a bounded batch.

Any number of workers may call this at once: the ZREM of an id decides which call promotes it, so a
job is promoted exactly once. Each promoted job gets status "queued"; an id whose job is gone (deleted,
ttl expired) or no longer scheduled (canceled) is dropped from the set without being pushed. Jobs
scheduled with at_front go to the head of the queue (of their priority level; jobs with a priority go to
the prio set, scored as enqueue.lua does). The wake channel is published when the pending list (or the
prio set) goes from empty to non-empty, as enqueue does.

KEYS[1] scheduled sorted set (score = run-at time, ms)
KEYS[2] pending list
KEYS[3] job key prefix
KEYS[4] wake channel (sharded pub/sub, same hash tag)
KEYS[5] prio sorted set
KEYS[6] stats hash (field "pseq": the priority sequence)
ARGV[1] maximum number of jobs to promote
Returns: {jobs promoted, run-at time (ms) of the earliest job still scheduled or -1 if none,
          the server's time (ms)}
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call("ZRANGE", KEYS[1], "-inf", now, "BYSCORE", "LIMIT", 0, tonumber(ARGV[1]))
local back = {}
local front = {}
local prio = {}  -- {id, level, at_front} triples
for _, id in ipairs(ids) do
  if redis.call("ZREM", KEYS[1], id) == 1 then
    local key = KEYS[3] .. id
    local job = redis.call("HMGET", key, "s", "af", "pr")
    if job[1] == "scheduled" then
      redis.call("HSET", key, "s", "queued")
      if job[2] then redis.call("HDEL", key, "af") end
      if job[3] then
        prio[#prio + 1] = {id, tonumber(job[3]), job[2] and true or false}
      elseif job[2] then
        front[#front + 1] = id
      else
        back[#back + 1] = id
      end
    end
  end
end
local promoted = #back + #front + #prio
local length = 0
if #back > 0 then length = redis.call("RPUSH", KEYS[2], unpack(back)) end
if #front > 0 then
  local reversed = {}
  for i = #front, 1, -1 do reversed[#reversed + 1] = front[i] end
  length = redis.call("LPUSH", KEYS[2], unpack(reversed))
end
if #back + #front > 0 and length == #back + #front then redis.call("SPUBLISH", KEYS[4], "1") end
if #prio > 0 then
  local top = redis.call("HINCRBY", KEYS[6], "pseq", #prio)
  local zadd = {}
  for k, entry in ipairs(prio) do
    local offset = entry[3] and (k - 1 - top) or (top - #prio + k)
    zadd[#zadd + 1] = entry[2] * 1099511627776 + 549755813888 + offset
    zadd[#zadd + 1] = entry[1]
  end
  redis.call("ZADD", KEYS[5], unpack(zadd))
  if redis.call("ZCARD", KEYS[5]) == #prio then redis.call("SPUBLISH", KEYS[4], "1") end
end
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
local next_at = -1
if first[2] then next_at = tonumber(first[2]) end
return {promoted, next_at, now}
