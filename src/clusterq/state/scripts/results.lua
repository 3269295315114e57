#!lua flags=no-writes
--[[ results: read a job's latest result and its history in one atomic step (reads only).

Read atomically so that an outcome recorded meanwhile (which moves the latest result to the history)
cannot show one result twice or lose one.

KEYS[1] job key prefix
KEYS[2] history key prefix
ARGV[1] job id
ARGV[2] how many history entries to read at most (the history is capped when written; this bounds the read)
Returns: the record's hk, ht, r, e, s, te (the latest result: see complete.lua; nil where absent), then
         the history entries, newest first ("<kind><ms>:<data>")
]]
local latest = redis.call("HMGET", KEYS[1] .. ARGV[1], "hk", "ht", "r", "e", "s", "te")
local out = {}
for i = 1, 6 do out[i] = latest[i] or false end
local count = tonumber(ARGV[2])
if count > 0 then
  for _, entry in ipairs(redis.call("LRANGE", KEYS[2] .. ARGV[1], 0, count - 1)) do out[#out + 1] = entry end
end
return out
