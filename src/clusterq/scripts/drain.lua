#!lua
--[[ drain: remove a bounded batch of jobs from the head of the queue, deleting their records.

Used by Queue.empty() and Queue.delete(), which call it until it returns 0: each call is bounded, so
emptying a queue of a million jobs never blocks the server. The pending list is drained first, then
the prio set.

KEYS[1] pending list
KEYS[2] job key prefix
KEYS[3] stats hash
KEYS[4] prio sorted set
ARGV[1] batch size
Returns: number of ids removed
]]
local ids = redis.call("LPOP", KEYS[1], tonumber(ARGV[1]))
if not ids then
  redis.call("HDEL", KEYS[3], "tomb")
  local popped = redis.call("ZPOPMIN", KEYS[4], tonumber(ARGV[1]))
  if #popped == 0 then return 0 end
  ids = {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
end
local keys = {}
for i, id in ipairs(ids) do keys[i] = KEYS[2] .. id end
redis.call("DEL", unpack(keys))
if redis.call("LLEN", KEYS[1]) == 0 then redis.call("HDEL", KEYS[3], "tomb") end
return #ids
