#!lua
--[[ complete: record the outcome of leased jobs (a batch, one queue) and end their leases.

Fencing: an outcome is recorded only if the job is still leased with the token the worker presents.
A worker whose lease expired and was taken over cannot overwrite the new attempt.

KEYS[1] active sorted set
KEYS[2] finished sorted set (score = expiry, ms; +inf = kept forever)
KEYS[3] failed sorted set (same scoring)
KEYS[4] job key prefix
ARGV[1..] five values per job: id, token, status ("finished" | "failed"), data (result or error text),
          keep (ms; "-1" = forever, "0" = delete the record now)
Returns: array with one entry per job: 1 recorded, 0 lease lost (outcome dropped)
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 5 do
  local id = ARGV[i]
  local key = KEYS[4] .. id
  if redis.call("HGET", key, "n") == ARGV[i + 1] and redis.call("ZREM", KEYS[1], id) == 1 then
    local status = ARGV[i + 2]
    local keep = tonumber(ARGV[i + 4])
    local registry = status == "finished" and KEYS[2] or KEYS[3]
    if keep == 0 then
      redis.call("DEL", key)
    else
      redis.call("HSET", key, "s", status, "te", now, status == "finished" and "r" or "e", ARGV[i + 3])
      if keep > 0 then
        redis.call("PEXPIRE", key, keep)
        redis.call("ZADD", registry, now + keep, id)
      else
        redis.call("ZADD", registry, "+inf", id)
      end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
