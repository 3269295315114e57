#!lua flags=allow-oom
--[[ extend: push back the lease deadline of jobs a worker still holds (its heartbeat, batched).

Runs on a server at maxmemory (flags=allow-oom): it only moves scores, and keeps the leases of running jobs while a full server refuses their outcomes.
KEYS[1] active sorted set
KEYS[2] job key prefix
ARGV[1] lease length (ms); the new deadline is the server's time plus this
ARGV[2..] two values per job: id, token
Returns: array with one entry per job: 1 extended, 2 extended but a stop was requested (the worker stops
         the job: the fallback for a lost stop message), 0 lease lost (taken over, canceled or deleted)
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call("HGET", KEYS[2] .. id, "n") == ARGV[i + 1] and redis.call("ZSCORE", KEYS[1], id) then
    redis.call("ZADD", KEYS[1], "XX", deadline, id)
    out[#out + 1] = redis.call("HEXISTS", KEYS[2] .. id, "sp") == 1 and 2 or 1
  else
    out[#out + 1] = 0
  end
end
return out
