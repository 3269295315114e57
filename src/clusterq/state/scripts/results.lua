#!lua flags=no-writes
--[[ results: read a job's latest result and its history in one atomic step (reads only).

Read atomically so that an outcome recorded meanwhile (which moves the latest result to the history)
cannot show one result twice or lose one.

KEYS[1] job_prefix: job key prefix
KEYS[2] history_prefix: history key prefix
ARGV[1] job_id: job id
ARGV[2] limit: how many history entries to read at most (the history is capped when written; this bounds
        the read)
Returns: the record's hk, ht, r, e, s, te (the latest result: see complete.lua; nil where absent), then
         the history entries, newest first ("<kind><ms>:<data>")
]]
local job_prefix = KEYS[1]
local history_prefix = KEYS[2]
local job_id = ARGV[1]
local limit = tonumber(ARGV[2])
local latest = redis.call("HMGET", job_prefix .. job_id, "hk", "ht", "r", "e", "s", "te")
local out = {}
for i = 1, 6 do out[i] = latest[i] or false end
if limit > 0 then
  for _, entry in ipairs(redis.call("LRANGE", history_prefix .. job_id, 0, limit - 1)) do out[#out + 1] = entry end
end
return out
