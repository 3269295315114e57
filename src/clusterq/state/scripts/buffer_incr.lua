#!lua
--[[ buffer_incr: add increments to one key of a counter buffer (clusterq.api.buffer), in one partition.

The key's increments are summed in a hash of its own, and the key is marked pending (scored by the time
of its first increment since the last flush, so the oldest flush first). O(fields): a hot path's call.

KEYS[1] pending: the partition's sorted set of pending keys
KEYS[2] values: the key's hash of summed increments
ARGV[1] member: the user's key (the pending set's member)
ARGV[2..] increment (2 per field): field, amount
          field name and amount: a whole number (HINCRBY) or a decimal one (HINCRBYFLOAT); a field that
          already holds a decimal sum takes whole amounts as decimals too
Returns: the number of fields incremented
Errors (before anything is written): the pending set not a sorted set or the values not a hash (WRONGTYPE
naming it); an amount that is not a number.
]]
local pending = KEYS[1]
local values = KEYS[2]
local member = ARGV[1]
--!include check_types
--!include now_ms
local bad = check_types("buffer_incr", {pending, "zset", values, "hash"})
if bad then return redis.error_reply(bad) end
local decimal = {}
for i = 2, #ARGV, 2 do
  local field, amount = ARGV[i], ARGV[i + 1]
  if not tonumber(amount) then
    return redis.error_reply("ERR buffer_incr: amount '" .. amount .. "' of field '" .. field ..
      "' is not a number; nothing was written")
  end
  local held = redis.call("HGET", values, field)
  decimal[i] = string.find(amount, "[%.eE]") ~= nil or (held and string.find(held, "[%.eE]") ~= nil)
end
redis.call("ZADD", pending, "NX", now_ms(), member)
for i = 2, #ARGV, 2 do
  if decimal[i] then
    redis.call("HINCRBYFLOAT", values, ARGV[i], ARGV[i + 1])
  else
    redis.call("HINCRBY", values, ARGV[i], ARGV[i + 1])
  end
end
return (#ARGV - 1) / 2
