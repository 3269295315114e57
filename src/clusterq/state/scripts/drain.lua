#!lua flags=allow-oom
--[[ drain: remove a bounded batch of jobs from the head of the queue, deleting their records.

Used by Queue.empty() and Queue.delete(), which call it until it returns 0: each call is bounded, so
emptying a queue of a million jobs never blocks the server.

Runs on a server at maxmemory (flags=allow-oom): it frees memory (Queue.empty, clusterq empty).
KEYS[1] pending: pending list
KEYS[2] job_prefix: job key prefix
KEYS[3] stats: stats hash
KEYS[4] history_prefix: history key prefix (a requeued or repeating job may have earlier results)
KEYS[5] prio: prio sorted set (drained once the list is empty)
KEYS[6] limit_waiting_prefix: waiting lists prefix (jobs set aside by a concurrency limit: drained last)
KEYS[7] limit_keys: sorted set of concurrency keys with jobs set aside
ARGV[1] batch: batch size
Returns: number of ids removed
Errors (before anything is written): a key of the queue of the wrong type (WRONGTYPE naming it); a batch
         that is not a whole number from 1 to 100000 (ERR). A waiting list of the wrong type met later
         stops the call there (what was removed stays removed; deleting is idempotent).
]]
local pending = KEYS[1]
local job_prefix = KEYS[2]
local stats = KEYS[3]
local history_prefix = KEYS[4]
local prio = KEYS[5]
local limit_waiting_prefix = KEYS[6]
local limit_keys = KEYS[7]
local batch = tonumber(ARGV[1])
--!include bump
--!include check_types
--!include check_int
local bad = check_int("drain", "batch", batch, 1, 100000)
  or check_types("drain", {pending, "list", stats, "hash", prio, "zset", limit_keys, "zset"})
if bad then return redis.error_reply(bad) end
local ids = redis.call("LPOP", pending, batch)
if not ids then
  redis.call("HDEL", stats, "tomb")
  local popped = redis.call("ZPOPMIN", prio, batch)
  ids = {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  for _ = 1, 100 do
    if #ids > 0 then break end
    local ck = redis.call("ZRANGE", limit_keys, 0, 0)[1]
    if not ck then return 0 end
    bad = check_types("drain", {limit_waiting_prefix .. ck, "list"})
    if bad then return redis.error_reply(bad) end
    ids = redis.call("LPOP", limit_waiting_prefix .. ck, batch) or {}
    if redis.call("EXISTS", limit_waiting_prefix .. ck) == 0 then redis.call("ZREM", limit_keys, ck) end
    local aside = tonumber(redis.call("HGET", stats, "lwait")) or 0
    if aside > 0 then bump(stats, "lwait", -math.min(aside, #ids)) end
  end
  if #ids == 0 then return 0 end
end
local keys = {}
for _, id in ipairs(ids) do
  keys[#keys + 1] = job_prefix .. id
  keys[#keys + 1] = history_prefix .. id
end
redis.call("DEL", unpack(keys))
if redis.call("LLEN", pending) == 0 then redis.call("HDEL", stats, "tomb") end
return #ids
