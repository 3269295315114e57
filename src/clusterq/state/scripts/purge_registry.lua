#!lua flags=allow-oom
--[[ purge_registry: remove a bounded batch of entries from a registry, deleting their job records.

Used by Queue.delete() and Registry.clear(), which call it until it returns 0.

Runs on a server at maxmemory (flags=allow-oom): it frees memory (Registry.clear, Queue.delete).
KEYS[1] registry: registry sorted set
KEYS[2] job_prefix: job key prefix
KEYS[3] history_prefix: history key prefix (the jobs' earlier results go with them)
ARGV[1] batch: batch size
Returns: number of entries removed
]]
local registry = KEYS[1]
local job_prefix = KEYS[2]
local history_prefix = KEYS[3]
local batch = tonumber(ARGV[1])
local popped = redis.call("ZPOPMIN", registry, batch)
if #popped == 0 then return 0 end
local keys = {}
for i = 1, #popped, 2 do
  keys[#keys + 1] = job_prefix .. popped[i]
  keys[#keys + 1] = history_prefix .. popped[i]
end
redis.call("DEL", unpack(keys))
return #popped / 2
