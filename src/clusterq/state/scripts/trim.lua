#!lua flags=allow-oom
--[[ trim: drop registry entries whose record has expired (score = expiry time), a bounded batch.

Runs on a server at maxmemory (flags=allow-oom): it frees memory.
KEYS[1] registry sorted set
ARGV[1] batch size
Returns: number of entries removed
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call("ZRANGE", KEYS[1], "-inf", "(" .. now, "BYSCORE", "LIMIT", 0, tonumber(ARGV[1]))
if #ids == 0 then return 0 end
return redis.call("ZREM", KEYS[1], unpack(ids))
