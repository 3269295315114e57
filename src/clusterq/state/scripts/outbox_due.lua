#!lua
--[[ outbox_due: read (never write) the outbox intents old enough to replay, by the server's clock.

A forwarder normally applies an intent right after writing it; maintenance replays those left behind
(its process died, or lost the connection) once they are older than a grace period.

KEYS[1] outbox: outbox sorted set (score = when written, ms, server time)
ARGV[1] min_age_ms: minimum age (ms)
ARGV[2] limit: maximum number of entries
Returns: {server time (ms), score of the oldest entry or -1, then up to limit entries at least
         min_age_ms old}
]]
local outbox = KEYS[1]
local min_age_ms = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
--!include now_ms
local now = now_ms()
local first = redis.call("ZRANGE", outbox, 0, 0, "WITHSCORES")
local out = {now, first[2] and tonumber(first[2]) or -1}
if first[2] then
  local due = redis.call("ZRANGE", outbox, "-inf", now - min_age_ms, "BYSCORE", "LIMIT", 0, limit)
  for _, entry in ipairs(due) do out[#out + 1] = entry end
end
return out
