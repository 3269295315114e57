#!lua flags=allow-oom
--[[ release: give leased jobs back to the head of their queue without counting the attempt.

Used when a worker stops: jobs it had prefetched but not started, and (on a second stop signal) the job
it was running. Order is kept: the first id given ends up first in the queue.

Runs on a server at maxmemory (flags=allow-oom): it moves ids back without growing anything, so a stopping worker hands its jobs back.
KEYS[1] pending list
KEYS[2] active sorted set
KEYS[3] job key prefix
KEYS[4] wake channel
ARGV[1..] two values per job: id, token
Returns: number of jobs released (a job whose lease was lost is skipped)
]]
local released = {}
for i = #ARGV - 1, 1, -2 do
  local id = ARGV[i]
  local key = KEYS[3] .. id
  local token = tonumber(ARGV[i + 1])
  if tonumber(redis.call("HGET", key, "n")) == token and redis.call("ZREM", KEYS[2], id) == 1 then
    redis.call("HSET", key, "s", "queued", "n", token - 1)
    redis.call("HDEL", key, "ts", "w")
    released[#released + 1] = id
  end
end
if #released > 0 then
  local length = redis.call("LPUSH", KEYS[1], unpack(released))
  if length == #released then redis.call("SPUBLISH", KEYS[4], "1") end
end
return #released
