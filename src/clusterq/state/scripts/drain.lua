#!lua flags=allow-oom
--[[ drain: remove a bounded batch of jobs from the head of the queue, deleting their records.

Used by Queue.empty() and Queue.delete(), which call it until it returns 0: each call is bounded, so
emptying a queue of a million jobs never blocks the server.

Runs on a server at maxmemory (flags=allow-oom): it frees memory (Queue.empty, clusterq empty).
KEYS[1] pending list
KEYS[2] job key prefix
KEYS[3] stats hash
KEYS[4] history key prefix (a requeued or repeating job may have earlier results)
KEYS[5] prio sorted set (drained once the list is empty)
KEYS[6] waiting lists prefix (jobs set aside by a concurrency limit: drained last)
KEYS[7] sorted set of concurrency keys with jobs set aside
ARGV[1] batch size
Returns: number of ids removed
]]
local ids = redis.call("LPOP", KEYS[1], tonumber(ARGV[1]))
if not ids then
  redis.call("HDEL", KEYS[3], "tomb")
  local popped = redis.call("ZPOPMIN", KEYS[5], tonumber(ARGV[1]))
  ids = {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  for _ = 1, 100 do
    if #ids > 0 then break end
    local ck = redis.call("ZRANGE", KEYS[7], 0, 0)[1]
    if not ck then return 0 end
    ids = redis.call("LPOP", KEYS[6] .. ck, tonumber(ARGV[1])) or {}
    if redis.call("EXISTS", KEYS[6] .. ck) == 0 then redis.call("ZREM", KEYS[7], ck) end
    local aside = tonumber(redis.call("HGET", KEYS[3], "lwait")) or 0
    if aside > 0 then redis.call("HINCRBY", KEYS[3], "lwait", -math.min(aside, #ids)) end
  end
  if #ids == 0 then return 0 end
end
local keys = {}
for _, id in ipairs(ids) do
  keys[#keys + 1] = KEYS[2] .. id
  keys[#keys + 1] = KEYS[4] .. id
end
redis.call("DEL", unpack(keys))
if redis.call("LLEN", KEYS[1]) == 0 then redis.call("HDEL", KEYS[3], "tomb") end
return #ids
