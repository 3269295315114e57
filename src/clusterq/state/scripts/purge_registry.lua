#!lua flags=allow-oom
--[[ purge_registry: remove a bounded batch of entries from a registry, deleting their job records.

Used by Queue.delete() and Registry.clear(), which call it until it returns 0.

Runs on a server at maxmemory (flags=allow-oom): it frees memory (Registry.clear, Queue.delete).
KEYS[1] registry: registry sorted set
KEYS[2] job_prefix: job key prefix
KEYS[3] history_prefix: history key prefix (the jobs' earlier results go with them)
ARGV[1] batch: batch size
Returns: number of entries removed
Errors (before anything is written): the registry not a sorted set (WRONGTYPE naming it); a batch that is
         not a whole number from 1 to 100000 (ERR).
]]
local registry = KEYS[1]
local job_prefix = KEYS[2]
local history_prefix = KEYS[3]
local batch = tonumber(ARGV[1])
--!include check_types
--!include check_int
local bad = check_int("purge_registry", "batch", batch, 1, 100000) or check_types("purge_registry", {registry, "zset"})
if bad then return redis.error_reply(bad) end
local popped = redis.call("ZPOPMIN", registry, batch)
if #popped == 0 then return 0 end
local keys = {}
for i = 1, #popped, 2 do
  keys[#keys + 1] = job_prefix .. popped[i]
  keys[#keys + 1] = history_prefix .. popped[i]
end
redis.call("DEL", unpack(keys))
return #popped / 2
