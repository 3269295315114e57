#!lua
--[[ ack: the forwarder applied (part of) an outbox intent; remove what is done.

For a parent's "ended" intent the forwarder works through the parent's dependents set in batches: it
removes the dependents it applied, and the intent itself only once that set is empty. A crash before
this script replays the batch, which the idempotent apply ignores.

KEYS[1] outbox sorted set
KEYS[2] (optional) the dependents set the intent works through
ARGV[1] the outbox entry
ARGV[2..] dependents applied (removed from KEYS[2])
Returns: number of dependents left in KEYS[2] (the entry stays while > 0), 0 when the entry was removed
]]
if #KEYS > 1 then
  if #ARGV > 1 then redis.call("ZREM", KEYS[2], unpack(ARGV, 2)) end
  local left = redis.call("ZCARD", KEYS[2])
  if left > 0 then return left end
end
redis.call("ZREM", KEYS[1], ARGV[1])
return 0
