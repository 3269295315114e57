#!lua
--[[ debounce: coalesce repeated enqueues of one key into a single job that runs once a window ends.

The first call for a key creates a scheduled job, due window ms after the server's time, and points the
key at it. Later calls, while that job has not started (scheduled, or queued after promotion), replace its
function, payload, options, meta, signature and headers (the latest call wins) and create nothing. Once
it has started (or ended, or is gone), the next call starts a new window with a new job. The pointer expires pointer_ttl_ms after
it was set, so unused keys do not accumulate.

KEYS[1] scheduled: scheduled sorted set (score = run-at time, ms)
KEYS[2] job_prefix: job key prefix
KEYS[3] wake_channel: wake channel: published with "s" when the new job is the earliest scheduled (as schedule.lua)
KEYS[4] debounce: debounce pointer: the id of the job collecting this key's enqueues
ARGV[1] window_ms: window (ms)
ARGV[2] pointer_ttl_ms: how long the pointer lives (ms)
ARGV[3] id: the job's id (used only when a new window starts); ARGV[3..14] are the job, twelve values as
        in enqueue.lua
ARGV[4] func: function path
ARGV[5] payload: payload ("" = none)
ARGV[6] options: options JSON ("" = none)
ARGV[7] meta: meta ("" = none)
ARGV[8] ttl_s: ttl in seconds ("0" = none)
ARGV[9] max_attempts: maximum attempts ("" = the worker's default)
ARGV[10] flag: id flag (as in enqueue.lua)
ARGV[11] signature: signature ("" = unsigned)
ARGV[12] priority: priority ("0" = none)
ARGV[13] concurrency_key: concurrency key ("" = none)
ARGV[14] headers: headers JSON ("" = none; stored as "hd")
Returns: {CREATED (a new job) | UPDATED (an existing job was updated) | OTHER_ID (nothing done: the job is
         signed and the pointer names another id; sign for that id and call again), the job's id}
Errors (before anything is written): the scheduled set of the wrong type, or a debounce pointer that is
         not a string (WRONGTYPE naming the key); window_ms, pointer_ttl_ms or the ttl not a whole number
         in range (ERR).
]]
local scheduled = KEYS[1]
local job_prefix = KEYS[2]
local wake_channel = KEYS[3]
local debounce = KEYS[4]
local window_ms = tonumber(ARGV[1])
local pointer_ttl_ms = tonumber(ARGV[2])
local id = ARGV[3]
local func = ARGV[4]  -- the job's values are also read by job_record, by position
local payload = ARGV[5]
local options = ARGV[6]
local meta = ARGV[7]
local ttl_s = ARGV[8]
local max_attempts = ARGV[9]
local flag = ARGV[10]
local signature = ARGV[11]
local priority = ARGV[12]
local concurrency_key = ARGV[13]
local headers = ARGV[14]
local CODE = {CREATED = 1, UPDATED = 0, OTHER_ID = 2}
--!include job_record
--!include now_ms
--!include check_types
--!include check_int
local bad = check_types("debounce", {scheduled, "zset", debounce, "string"})
  or check_int("debounce", "window_ms", window_ms, 0, 3153600000000)
  or check_int("debounce", "pointer_ttl_ms", pointer_ttl_ms, 1, 3153600000000)
  or check_int("debounce", "job " .. id .. ": ttl_s", ttl_s, 0, 3153600000)
if bad then return redis.error_reply(bad) end
local current = redis.call("GET", debounce)
if current then
  local key = job_prefix .. current
  local status = redis.pcall("HGET", key, "s")
  if status == "scheduled" or status == "queued" then
    if signature ~= "" and current ~= id then return {CODE.OTHER_ID, current} end  -- a signature covers the id
    redis.call("HSET", key, "f", func)
    for _, pair in ipairs({{"p", payload}, {"o", options}, {"m", meta}, {"sg", signature}, {"hd", headers}}) do
      if pair[2] == "" then redis.call("HDEL", key, pair[1]) else redis.call("HSET", key, pair[1], pair[2]) end
    end
    return {CODE.UPDATED, current}
  end
end
local now = now_ms()
local run_at = now + window_ms
local key = job_prefix .. id
local fields, ttl = job_record("scheduled", now, ARGV, 3)
redis.call("HSET", key, unpack(fields))
if ttl then redis.call("PEXPIREAT", key, run_at + ttl * 1000) end
redis.call("ZADD", scheduled, run_at, id)
redis.call("SET", debounce, id, "PX", pointer_ttl_ms)
local first = redis.call("ZRANGE", scheduled, 0, 0, "WITHSCORES")
if tonumber(first[2]) >= run_at then redis.call("SPUBLISH", wake_channel, "s") end
return {CODE.CREATED, id}
