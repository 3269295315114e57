#!lua
--[[ cron_tick: enqueue one tick of a periodic job, exactly once whatever the number of schedulers.

The queue's cron hash holds, per periodic job, the last tick taken. A tick is taken only if it is newer
than that one, so every scheduler can offer every tick and only the first offer of each runs; an older
or equal tick (a slower scheduler, a replayed call) changes nothing. A tick later than the server's
clock is refused ("early"), so a scheduler whose clock runs ahead cannot run a job before its time.
The job is created as enqueue.lua creates it (a change to one must go to the other), with an id derived from (name, tick): an id that already
has a record is not created again (a second guard). Each run is pushed on the job's capped list of
recent runs.

KEYS[1] cron hash (field = periodic job name, value = last tick taken, ms)
KEYS[2] recent runs list of this periodic job ("<tick ms> <job id>", newest first)
KEYS[3] pending list
KEYS[4] job key prefix; job hashes are KEYS[4]..id and share its hash tag
KEYS[5] wake channel (sharded pub/sub, same hash tag)
KEYS[6] prio sorted set (jobs with a priority, as in enqueue.lua)
KEYS[7] stats hash (field "pseq": the priority sequence)
ARGV[1] periodic job name
ARGV[2] tick (ms since the epoch)
ARGV[3] "fire": run the tick if it is new; "resume": the same, but a job seen for the first time only
        records the tick (a new declaration does not run for a tick that passed before it existed);
        "skip": record the tick without running it (missed ticks are not caught up)
ARGV[4] number of recent runs kept
ARGV[5..11] the job, as in enqueue.lua: id, function path, payload ("" = none), options JSON ("" = none),
        meta ("" = none), ttl in seconds ("0" = none), maximum attempts ("" = the worker's default)
ARGV[12] "0": do not run while the previous run has not ended (queued, started, scheduled for a retry or
        deferred): the tick is recorded, not run; "1": runs may overlap (in the slot of enqueue's id flag)
ARGV[13] the job's signature ("" = unsigned; stored as "sg", see signing.py)
ARGV[14] priority ("0" = none, else 1..9, lower runs first)
ARGV[15] concurrency key ("" = none)
ARGV[16] headers JSON ("" = none; stored as "hd")
Returns: {code, server time (ms), last tick taken before this call (ms, -1 = none)}; code 1 enqueued,
         0 tick already taken (or its job id already existed), 2 recorded without running, 3 early,
         4 recorded without running because the previous run has not ended
]]
--!include job_record
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tick = tonumber(ARGV[2])
local last = tonumber(redis.call("HGET", KEYS[1], ARGV[1]) or "-1")
if tick > now then return {3, now, last} end
if tick <= last then return {0, now, last} end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == "skip" or (ARGV[3] == "resume" and last < 0) then return {2, now, last} end
if ARGV[12] == "0" then
  local previous = redis.call("LINDEX", KEYS[2], 0)
  if previous then
    local previous_id = string.sub(previous, string.find(previous, " ", 1, true) + 1)
    local status = redis.call("HGET", KEYS[4] .. previous_id, "s")
    if status == "queued" or status == "started" or status == "scheduled" or status == "deferred" then
      return {4, now, last}
    end
  end
end
local id = ARGV[5]
local key = KEYS[4] .. id
if redis.call("EXISTS", key) == 1 then return {0, now, last} end
local fields, ttl = job_record("queued", now, ARGV, 5)
local level = tonumber(ARGV[14]) or 0
redis.call("HSET", key, unpack(fields))
if ttl then redis.call("EXPIRE", key, ttl) end
if level > 0 then
  -- Scored as enqueue.lua scores a job pushed at the back of its level.
  local seq = redis.call("HINCRBY", KEYS[7], "pseq", 1)
  redis.call("ZADD", KEYS[6], level * 1099511627776 + 549755813888 + seq, id)
  if redis.call("ZCARD", KEYS[6]) == 1 then redis.call("SPUBLISH", KEYS[5], "1") end
elseif redis.call("RPUSH", KEYS[3], id) == 1 then
  redis.call("SPUBLISH", KEYS[5], "1")
end
redis.call("LPUSH", KEYS[2], ARGV[2] .. " " .. id)
redis.call("LTRIM", KEYS[2], 0, tonumber(ARGV[4]) - 1)
return {1, now, last}
