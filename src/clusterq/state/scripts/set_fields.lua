#!lua
--[[ set_fields: update fields of an existing job (meta, progress) without recreating a deleted one.

KEYS[1] job: job key
ARGV[1..] fields (2 per field): field, value
Returns: UPDATED, or NO_SUCH_JOB (nothing written)
Errors: the job key not a hash (WRONGTYPE naming it; nothing written).
]]
local job = KEYS[1]
local CODE = {UPDATED = 1, NO_SUCH_JOB = 0}
--!include check_types
local bad = check_types("set_fields", {job, "hash"})
if bad then return redis.error_reply(bad) end
if redis.call("EXISTS", job) == 0 then return CODE.NO_SUCH_JOB end
redis.call("HSET", job, unpack(ARGV))
return CODE.UPDATED
