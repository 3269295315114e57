#!lua
--[[ debounce: coalesce repeated enqueues of one key into a single job that runs once a window ends.

The first call for a key creates a scheduled job, due window ms after the server's time, and points the
key at it. Later calls, while that job has not started (scheduled, or queued after promotion), replace its
function, payload, options, meta and signature (the latest call wins) and create nothing. Once it has started (or
ended, or is gone), the next call starts a new window with a new job. The pointer expires ARGV[2] ms after
it was set, so unused keys do not accumulate.

KEYS[1] scheduled sorted set (score = run-at time, ms)
KEYS[2] job key prefix
KEYS[3] wake channel: published with "s" when the new job is the earliest scheduled (as schedule.lua)
KEYS[4] debounce pointer: the id of the job collecting this key's enqueues
ARGV[1] window (ms)
ARGV[2] how long the pointer lives (ms)
ARGV[3..14] the job, twelve values as in enqueue.lua (its id is used only when a new window starts)
Returns: {1 new job created | 0 an existing job was updated | 2 nothing done: the job is signed and the
         pointer names another id (sign for that id and call again), the job's id}
]]
--!include job_record
local current = redis.call("GET", KEYS[4])
if current then
  local key = KEYS[2] .. current
  local status = redis.pcall("HGET", key, "s")
  if status == "scheduled" or status == "queued" then
    if ARGV[11] ~= "" and current ~= ARGV[3] then return {2, current} end  -- a signature covers the id
    redis.call("HSET", key, "f", ARGV[4])
    for _, pair in ipairs({{"p", ARGV[5]}, {"o", ARGV[6]}, {"m", ARGV[7]}, {"sg", ARGV[11]}, {"hd", ARGV[14]}}) do
      if pair[2] == "" then redis.call("HDEL", key, pair[1]) else redis.call("HSET", key, pair[1], pair[2]) end
    end
    return {0, current}
  end
end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run_at = now + tonumber(ARGV[1])
local id = ARGV[3]
local key = KEYS[2] .. id
local fields, ttl = job_record("scheduled", now, ARGV, 3)
redis.call("HSET", key, unpack(fields))
if ttl then redis.call("PEXPIREAT", key, run_at + ttl * 1000) end
redis.call("ZADD", KEYS[1], run_at, id)
redis.call("SET", KEYS[4], id, "PX", tonumber(ARGV[2]))
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
if tonumber(first[2]) >= run_at then redis.call("SPUBLISH", KEYS[3], "s") end
return {1, id}
