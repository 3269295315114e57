#!lua flags=allow-oom
--[[ purge_registry: remove a bounded batch of entries from a registry, deleting their job records.

Used by Queue.delete() and Registry.clear(), which call it until it returns 0.

Runs on a server at maxmemory (flags=allow-oom): it frees memory (Registry.clear, Queue.delete).
KEYS[1] registry sorted set
KEYS[2] job key prefix
KEYS[3] history key prefix (the jobs' earlier results go with them)
ARGV[1] batch size
Returns: number of entries removed
]]
local popped = redis.call("ZPOPMIN", KEYS[1], tonumber(ARGV[1]))
if #popped == 0 then return 0 end
local keys = {}
for i = 1, #popped, 2 do
  keys[#keys + 1] = KEYS[2] .. popped[i]
  keys[#keys + 1] = KEYS[3] .. popped[i]
end
redis.call("DEL", unpack(keys))
return #popped / 2
