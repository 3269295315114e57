#!lua flags=allow-oom
--[[ extend: push back the lease deadline of jobs a worker still holds (its heartbeat, batched).

Runs on a server at maxmemory (flags=allow-oom): it only moves scores, and keeps the leases of running jobs while a full server refuses their outcomes.
KEYS[1] active: active sorted set
KEYS[2] job_prefix: job key prefix
ARGV[1] lease_ms: lease length (ms); the new deadline is the server's time plus this
ARGV[2..] leases (2 per job): id, token
Returns: array with one entry per job: EXTENDED, STOP_REQUESTED (extended, but a stop was requested: the
         worker stops the job, the fallback for a lost stop message), LEASE_LOST (taken over, canceled or
         deleted; also a job key that is not a hash)
Errors (checked before anything is written): the active set of the wrong type (WRONGTYPE naming it); a
         lease_ms that is not a whole number from 0 (end the leases now) to 100 years of ms (ERR).
]]
local active = KEYS[1]
local job_prefix = KEYS[2]
local lease_ms = tonumber(ARGV[1])
local CODE = {EXTENDED = 1, STOP_REQUESTED = 2, LEASE_LOST = 0}
--!include now_ms
--!include check_types
--!include check_int
local bad = check_int("extend", "lease_ms", lease_ms, 0, 3153600000000) or check_types("extend", {active, "zset"})
if bad then return redis.error_reply(bad) end
local deadline = now_ms() + lease_ms
local out = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.pcall("HGET", job_prefix .. id, "n") == token and redis.call("ZSCORE", active, id) then
    redis.call("ZADD", active, "XX", deadline, id)
    out[#out + 1] = redis.call("HEXISTS", job_prefix .. id, "sp") == 1 and CODE.STOP_REQUESTED or CODE.EXTENDED
  else
    out[#out + 1] = CODE.LEASE_LOST
  end
end
return out
