#!lua
--[[ complete: record the outcome of leased jobs (a batch, one queue) and end their leases.

Fencing: an outcome is recorded only if the job is still leased with the token the worker presents.
A worker whose lease expired and was taken over cannot overwrite the new attempt.

KEYS[1] active sorted set
KEYS[2] finished sorted set (score = expiry, ms; +inf = kept forever)
KEYS[3] failed sorted set (same scoring)
KEYS[4] job key prefix
KEYS[5] scheduled sorted set (a retry with a delay waits here)
KEYS[6] pending list (a retry without a delay goes back here)
KEYS[7] wake channel
KEYS[8] outbox sorted set (a job with dependents that ends writes "e<TAB>status<TAB>id" here)
ARGV[1..] six values per job: id, token, status ("finished" | "failed"), data (result or error text),
          keep (ms; "-1" = forever, "0" = delete the record now), retry ("" or "max;ms,ms,...": a failed
          job whose retry count "rt" is below max is scheduled again after the rt-th interval instead)
Returns: array with one entry per job: 1 recorded (or retried), 2 recorded and its dependents are to be
         told (an outbox entry was written), 0 lease lost (outcome dropped)
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 6 do
  local id = ARGV[i]
  local key = KEYS[4] .. id
  local retry = ARGV[i + 5]
  local retries = nil
  if retry ~= "" and ARGV[i + 2] == "failed" then
    local max, delays = string.match(retry, "^(%d+);(.*)$")
    local done = tonumber(redis.call("HGET", key, "rt")) or 0
    if max and done < tonumber(max) then
      local list = {}
      for ms in string.gmatch(delays, "%d+") do list[#list + 1] = tonumber(ms) end
      retries = {done + 1, list[done + 1] or list[#list] or 0}
    end
  end
  if redis.call("HGET", key, "n") == ARGV[i + 1] and redis.call("ZREM", KEYS[1], id) == 1 then
    if retries then
      -- Retry: the failure is kept as the last error; the job waits its interval, then runs again.
      redis.call("HDEL", key, "ts", "w")
      if retries[2] > 0 then
        redis.call("HSET", key, "s", "scheduled", "e", ARGV[i + 3], "rt", retries[1])
        redis.call("ZADD", KEYS[5], now + retries[2], id)
        local first = redis.call("ZRANGE", KEYS[5], 0, 0)
        if first[1] == id then redis.call("SPUBLISH", KEYS[7], "s") end
      else
        redis.call("HSET", key, "s", "queued", "e", ARGV[i + 3], "rt", retries[1])
        if redis.call("RPUSH", KEYS[6], id) == 1 then redis.call("SPUBLISH", KEYS[7], "1") end
      end
    else
      local status = ARGV[i + 2]
      local keep = tonumber(ARGV[i + 4])
      local registry = status == "finished" and KEYS[2] or KEYS[3]
      local notify = redis.call("HGET", key, "dd")
      if notify then redis.call("ZADD", KEYS[8], now, "e\t" .. status .. "\t" .. id) end
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
      out[#out + 1] = notify and 2 or 1
    end
    if retries then out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
