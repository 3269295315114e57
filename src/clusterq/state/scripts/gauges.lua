#!lua flags=no-writes
--[[ gauges: a queue's O(1) counters and its oldest waiting job's enqueue time, in one step (reads only).

What a metrics scrape, the autoscaling answer and the notifications' periodic check read: the lengths of
the queue's lists and sorted sets, its stats counters, how many scheduled jobs are due, and the enqueue
time of the job at the head of the line (the pending list's head, else the prio set's first), so the
oldest waiting age needs no second round trip. Bounded: a fixed number of O(1) or O(log n) commands.

KEYS[1] pending: pending list
KEYS[2] prio: prio sorted set
KEYS[3] stats: stats hash (fields "tomb": tombstones in pending, "lwait": jobs set aside by a
        concurrency limit)
KEYS[4] active: active sorted set
KEYS[5] scheduled: scheduled sorted set (score = run-at time, ms)
KEYS[6] deferred: deferred sorted set
KEYS[7] failed: failed sorted set
KEYS[8] finished: finished sorted set
KEYS[9] canceled: canceled sorted set
KEYS[10] job_prefix: job key prefix
Returns: {pending length, prio size, tombstones, set aside, then one count per registry, the due scheduled
         jobs, the head job's enqueue time (ms, server clock; -1: none waits, or its record is gone, a
         canceled head) and the server's time (ms)}:
         gauges (13 values): pending, prio, tomb, lwait, active, scheduled, deferred, failed, finished, canceled, due, head_created_ms, now_ms
]]
local pending = KEYS[1]
local prio = KEYS[2]
local stats = KEYS[3]
local active = KEYS[4]
local scheduled = KEYS[5]
local deferred = KEYS[6]
local failed = KEYS[7]
local finished = KEYS[8]
local canceled = KEYS[9]
local job_prefix = KEYS[10]
local t = redis.call("TIME")
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local length = redis.call("LLEN", pending)
local ranked = redis.call("ZCARD", prio)
local counters = redis.call("HMGET", stats, "tomb", "lwait")
local head = redis.call("LINDEX", pending, 0)
if not head then
  head = redis.call("ZRANGE", prio, 0, 0)[1]
end
local created = -1
if head then
  created = tonumber(redis.call("HGET", job_prefix .. head, "c") or "-1") or -1
end
return {length, ranked, tonumber(counters[1] or "0") or 0, tonumber(counters[2] or "0") or 0,
        redis.call("ZCARD", active), redis.call("ZCARD", scheduled), redis.call("ZCARD", deferred),
        redis.call("ZCARD", failed), redis.call("ZCARD", finished), redis.call("ZCARD", canceled),
        redis.call("ZCOUNT", scheduled, "-inf", now_ms), created, now_ms}
