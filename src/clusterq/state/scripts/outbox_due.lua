#!lua
--[[ outbox_due: read (never write) the outbox intents old enough to replay, by the server's clock.

A forwarder normally applies an intent right after writing it; maintenance replays those left behind
(its process died, or lost the connection) once they are older than a grace period.

KEYS[1] outbox sorted set (score = when written, ms, server time)
ARGV[1] minimum age (ms)
ARGV[2] maximum number of entries
Returns: {server time (ms), score of the oldest entry or -1, then up to ARGV[2] entries at least ARGV[1] old}
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
local out = {now, first[2] and tonumber(first[2]) or -1}
if first[2] then
  local due = redis.call("ZRANGE", KEYS[1], "-inf", now - tonumber(ARGV[1]), "BYSCORE", "LIMIT", 0,
    tonumber(ARGV[2]))
  for _, entry in ipairs(due) do out[#out + 1] = entry end
end
return out
