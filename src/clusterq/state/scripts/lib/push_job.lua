--[[ push_job(id, level, at_front, q): put one queued job where a worker's lease finds it, and wake the
queue's idle workers if it was empty: jobs without a priority (level nil or 0) go to the pending list,
the others to the prio set at their level (scored by prio_score with the next "pseq"), at the front or
the back. Shared by every script that queues one job (complete, cron_tick, requeue, resolve,
group_close, group_done, free_slot).

q is a table of the including script's keys: pending (pending list), prio (prio sorted set), stats (stats
hash, field "pseq"), wake (wake channel). The wake channel is published only when the list or set pushed
to goes from empty to non-empty: idle workers need one signal, busy ones none.
]]
--!include bump
--!include prio_score
local function push_job(id, level, at_front, q)
  if level and level > 0 then
    local seq = bump(q.stats, "pseq", 1)
    redis.call("ZADD", q.prio, prio_score(level, at_front and -seq or seq), id)
    if redis.call("ZCARD", q.prio) == 1 then redis.call("SPUBLISH", q.wake, "1") end
  else
    local length
    if at_front then length = redis.call("LPUSH", q.pending, id) else length = redis.call("RPUSH", q.pending, id) end
    if length == 1 then redis.call("SPUBLISH", q.wake, "1") end
  end
end
