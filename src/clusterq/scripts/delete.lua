#!lua flags=allow-oom
--[[ delete: remove a job's record and its entries in every registry of its queue.

A queued job leaves a tombstone in the pending list (see cancel.lua); a started job loses its lease.

Runs on a server at maxmemory (flags=allow-oom): it frees memory: deleting jobs is how an operator gets a full server going again.
KEYS[1] job key prefix
KEYS[2] active sorted set
KEYS[3] finished sorted set
KEYS[4] failed sorted set
KEYS[5] canceled sorted set
KEYS[6] stats hash
KEYS[7] scheduled sorted set
KEYS[8] history key prefix (the job's earlier results go with it)
ARGV[1] job id
Returns: 1 deleted, 0 no such job
]]
local key = KEYS[1] .. ARGV[1]
local status = redis.call("HGET", key, "s")
for i = 2, 5 do redis.call("ZREM", KEYS[i], ARGV[1]) end
redis.call("ZREM", KEYS[7], ARGV[1])
if status == "queued" then redis.call("HINCRBY", KEYS[6], "tomb", 1) end
local deleted = redis.call("EXISTS", key)
redis.call("DEL", key, KEYS[8] .. ARGV[1])
return deleted
