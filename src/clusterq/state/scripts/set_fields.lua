#!lua
--[[ set_fields: update fields of an existing job (meta, progress) without recreating a deleted one.

KEYS[1] job: job key
ARGV[1..] fields (2 per field): field, value
Returns: UPDATED, or NO_SUCH_JOB (nothing written)
]]
local job = KEYS[1]
local CODE = {UPDATED = 1, NO_SUCH_JOB = 0}
if redis.call("EXISTS", job) == 0 then return CODE.NO_SUCH_JOB end
redis.call("HSET", job, unpack(ARGV))
return CODE.UPDATED
