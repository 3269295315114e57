#!lua flags=allow-oom
--[[ trim: drop registry entries whose record has expired (score = expiry time), a bounded batch.

Runs on a server at maxmemory (flags=allow-oom): it frees memory.
KEYS[1] registry: registry sorted set
ARGV[1] batch: batch size
Returns: number of entries removed
Errors (before anything is written): the registry not a sorted set (WRONGTYPE naming it); a batch that is
         not a whole number from 1 to 100000 (ERR).
]]
local registry = KEYS[1]
local batch = tonumber(ARGV[1])
--!include check_types
--!include check_int
local bad = check_int("trim", "batch", batch, 1, 100000) or check_types("trim", {registry, "zset"})
if bad then return redis.error_reply(bad) end
--!include now_ms
local now = now_ms()
local ids = redis.call("ZRANGE", registry, "-inf", "(" .. now, "BYSCORE", "LIMIT", 0, batch)
if #ids == 0 then return 0 end
return redis.call("ZREM", registry, unpack(ids))
