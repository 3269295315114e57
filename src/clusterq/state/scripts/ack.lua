#!lua
--[[ ack: the forwarder applied (part of) an outbox intent; remove what is done.

For a parent's "ended" intent the forwarder works through the parent's dependents set in batches: it
removes the dependents it applied, and the intent itself only once that set is empty. A crash before
this script replays the batch, which the idempotent apply ignores.

KEYS[1] outbox: outbox sorted set
KEYS[2] dependents: (optional) the dependents set the intent works through
ARGV[1] entry: the outbox entry
ARGV[2..] applied (1 per dependent): applied
          dependents applied (removed from the dependents set)
Returns: number of dependents left in the dependents set (the entry stays while > 0), 0 when the entry
         was removed
Errors (before anything is written): the outbox or the dependents set not a sorted set (WRONGTYPE naming it).
]]
local outbox = KEYS[1]
local dependents = KEYS[2]  -- nil when the call names no dependents set
local entry = ARGV[1]
--!include check_types
local bad = check_types("ack", {outbox, "zset", dependents or outbox, "zset"})
if bad then return redis.error_reply(bad) end
if dependents then
  if #ARGV > 1 then redis.call("ZREM", dependents, unpack(ARGV, 2)) end
  local left = redis.call("ZCARD", dependents)
  if left > 0 then return left end
end
redis.call("ZREM", outbox, entry)
return 0
