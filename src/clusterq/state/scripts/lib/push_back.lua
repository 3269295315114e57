--[[ push_back(lpushed, prio_jobs, q): put jobs back at the head of their queue, in one LPUSH and one ZADD,
and wake the queue's idle workers if the list or the prio set was empty. Shared by release and
requeue_expired (a job handed back, a job whose lease ran out, a job set aside by a concurrency limit).

lpushed: ids without a priority, in LPUSH order (the last one ends up first in the queue).
prio_jobs: {id, level} pairs, in the order they are to be leased: scored at the head of their level
(prio_score with "pseq" counted down), the first one first.
q is a table of the including script's keys: pending (pending list), prio (prio sorted set), stats (stats
hash, field "pseq"), wake (wake channel).
]]
--!include bump
--!include prio_score
local function push_back(lpushed, prio_jobs, q)
  if #lpushed > 0 then
    local length = redis.call("LPUSH", q.pending, unpack(lpushed))
    if length == #lpushed then redis.call("SPUBLISH", q.wake, "1") end
  end
  if #prio_jobs > 0 then
    local top = bump(q.stats, "pseq", #prio_jobs)
    local zadd = {}
    for k, entry in ipairs(prio_jobs) do
      zadd[#zadd + 1] = prio_score(entry[2], k - 1 - top)
      zadd[#zadd + 1] = entry[1]
    end
    redis.call("ZADD", q.prio, unpack(zadd))
    if redis.call("ZCARD", q.prio) == #prio_jobs then redis.call("SPUBLISH", q.wake, "1") end
  end
end
