#!lua
--[[ set_fields: update fields of an existing job (meta, progress) without recreating a deleted one.

KEYS[1] job key
ARGV[1..] field, value pairs
Returns: 1 updated, 0 no such job
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
redis.call("HSET", KEYS[1], unpack(ARGV))
return 1
