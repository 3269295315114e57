--[[ fail_record(key, id, reason, now, failed, keep_ms): turn a malformed job record into a failed one
that says why, kept keep_ms (a whole number of ms, checked by the caller) and listed in the failed
registry, so an operator sees it instead of a job silently dropped or run twice. A key that is not a
hash is replaced. Included by lease (the one place that meets every queued record).
]]
local function fail_record(key, id, reason, now, failed, keep_ms)
  if redis.call("TYPE", key).ok ~= "hash" then redis.call("DEL", key) end
  redis.call("HSET", key, "s", "failed", "te", now, "e", "malformed job record: " .. reason .. "; the job was not run")
  redis.call("HSETNX", key, "f", "")
  redis.call("HSETNX", key, "c", now)
  redis.call("PEXPIRE", key, keep_ms)
  redis.call("ZADD", failed, now + keep_ms, id)
end
