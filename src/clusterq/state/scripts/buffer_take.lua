#!lua
--[[ buffer_take: take a bounded batch of a counter buffer partition's pending keys into flush records.

First the partition's flush records whose lease has ended (a flusher that crashed before buffer_ack) are
taken again, under the same flush id; then the oldest pending keys, each becoming a new flush record: a
string holding {"key": ..., "fields": {field: sum}} (sums as strings, exactly as Redis holds them), the
key's hash deleted and the key removed from the pending set, so increments that arrive afterwards start a
new sum. Every record is leased (the in-flight set, scored by the lease's end) until buffer_ack removes
it. Bounded: at most batch records, each O(fields); the ranges are read with LIMIT.

KEYS[1] pending: the partition's sorted set of pending keys (scored by first increment, ms)
KEYS[2] inflight: the partition's sorted set of flush ids, scored by the end of their lease (ms)
KEYS[3] values_prefix: prefix of the keys' hashes (the user's key follows it)
KEYS[4] flush_prefix: prefix of the flush records (the flush id's sequence number follows it)
KEYS[5] seq: the partition's flush id counter
ARGV[1] batch: the most records to return
ARGV[2] lease_ms: how long a record stays leased before another flusher may take it again
ARGV[3] min_age_ms: only keys whose first pending increment is at least this old are taken
Returns: the records taken, flat:
         taken records (2 per record): seq, record
         (seq: the record's number in the partition, from which its flush id is built; record: its JSON)
Errors (before anything is written): a key of the wrong type (WRONGTYPE naming it); a batch, lease or age
that is not a whole number in range.
]]
local pending = KEYS[1]
local inflight = KEYS[2]
local values_prefix = KEYS[3]
local flush_prefix = KEYS[4]
local seq = KEYS[5]
local batch = ARGV[1]
local lease_ms = ARGV[2]
local min_age_ms = ARGV[3]
--!include check_types
--!include check_int
--!include now_ms
local bad = check_types("buffer_take", {pending, "zset", inflight, "zset", seq, "string"})
  or check_int("buffer_take", "batch", batch, 1, 100000)
  or check_int("buffer_take", "lease_ms", lease_ms, 1, 1e12)
  or check_int("buffer_take", "min_age_ms", min_age_ms, 0, 1e12)
if bad then return redis.error_reply(bad) end
local now = now_ms()
local limit = tonumber(batch)
local deadline = now + tonumber(lease_ms)
local out = {}
for _, id in ipairs(redis.call("ZRANGEBYSCORE", inflight, "-inf", now, "LIMIT", 0, limit)) do
  local record = redis.call("GET", flush_prefix .. id)
  if record then
    redis.call("ZADD", inflight, deadline, id)
    out[#out + 1] = id
    out[#out + 1] = record
  else
    redis.call("ZREM", inflight, id)
  end
end
local room = limit - #out / 2
if room <= 0 then return out end
for _, member in ipairs(redis.call("ZRANGEBYSCORE", pending, "-inf", now - tonumber(min_age_ms), "LIMIT", 0, room)) do
  local values = values_prefix .. member
  local flat = {}
  if redis.call("TYPE", values).ok == "hash" then flat = redis.call("HGETALL", values) end
  local fields = {}
  for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
  local id = tostring(redis.call("INCR", seq))
  local record = cjson.encode({key = member, fields = fields})
  redis.call("SET", flush_prefix .. id, record)
  redis.call("ZADD", inflight, deadline, id)
  redis.call("DEL", values)
  redis.call("ZREM", pending, member)
  out[#out + 1] = id
  out[#out + 1] = record
end
return out
