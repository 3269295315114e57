#!lua
--[[ schedule: create jobs with status "scheduled" and add them to the queue's scheduled set at a run-at time.

Like enqueue, an id that already has a job (in any state) is left untouched, so a retried call cannot
create a second job. The run-at time is either given by the client ("at": milliseconds since the epoch,
from the client's clock) or computed here from the server's clock ("in": a delay in milliseconds), so a
delay never depends on the client's clock. Due jobs are moved to the pending list by promote.lua.
A job with a ttl expires ttl seconds after its run-at time, not after it was scheduled.

KEYS[1] scheduled sorted set (score = run-at time, ms)
KEYS[2] job key prefix; job hashes are KEYS[2]..id and share its hash tag
KEYS[3] wake channel: published with "s" when these jobs become the earliest scheduled, so idle workers
        (which sleep until the next due time they know of) learn of the earlier one at once
ARGV[1] "at" (ARGV[2] is an absolute time) or "in" (ARGV[2] is a delay from the server's time)
ARGV[2] milliseconds
ARGV[3] "1" to push at the front of the queue when the job is promoted, else "0"
ARGV[4..] nine values per job, as in enqueue.lua: id, function path, payload, options JSON, meta, ttl in
          seconds ("0" = none), maximum attempts ("" = the worker's default), "1" if the id was generated
          by the client (the existence check is skipped), signature ("" = unsigned)
Returns: {run-at time (ms), then one entry per job: 1 created, 0 a job with that id already existed}
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run_at = tonumber(ARGV[2])
if ARGV[1] == "in" then run_at = now + run_at end
local out = {run_at}
local zadd = {}
for i = 4, #ARGV, 9 do
  local id = ARGV[i]
  local key = KEYS[2] .. id
  if ARGV[i + 7] ~= "1" and redis.call("EXISTS", key) == 1 then
    out[#out + 1] = 0
  else
    local fields = {"s", "scheduled", "f", ARGV[i + 1], "c", now}
    if ARGV[i + 2] ~= "" then fields[#fields + 1] = "p"; fields[#fields + 1] = ARGV[i + 2] end
    if ARGV[i + 3] ~= "" then fields[#fields + 1] = "o"; fields[#fields + 1] = ARGV[i + 3] end
    if ARGV[i + 4] ~= "" then fields[#fields + 1] = "m"; fields[#fields + 1] = ARGV[i + 4] end
    local ttl = tonumber(ARGV[i + 5])
    if ttl and ttl > 0 then fields[#fields + 1] = "x"; fields[#fields + 1] = "1" end
    if ARGV[i + 6] ~= "" then fields[#fields + 1] = "ma"; fields[#fields + 1] = ARGV[i + 6] end
    if ARGV[i + 8] ~= "" then fields[#fields + 1] = "sg"; fields[#fields + 1] = ARGV[i + 8] end
    if ARGV[3] == "1" then fields[#fields + 1] = "af"; fields[#fields + 1] = "1" end
    redis.call("HSET", key, unpack(fields))
    if ttl and ttl > 0 then redis.call("PEXPIREAT", key, math.max(run_at, now) + ttl * 1000) end
    zadd[#zadd + 1] = run_at
    zadd[#zadd + 1] = id
    out[#out + 1] = 1
  end
end
if #zadd > 0 then
  redis.call("ZADD", KEYS[1], unpack(zadd))
  local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  if tonumber(first[2]) >= run_at then redis.call("SPUBLISH", KEYS[3], "s") end
end
return out
