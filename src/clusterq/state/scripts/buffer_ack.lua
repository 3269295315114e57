#!lua
--[[ buffer_ack: a flusher enqueued the jobs of these flush records; remove the records.

KEYS[1] inflight: the partition's sorted set of leased flush ids
KEYS[2] flush_prefix: prefix of the flush records
ARGV[1..] flushed (1 per record): seq
          the record's sequence number in the partition
Returns: the number of records removed (a record already removed, by another flusher that took it again
         after its lease ended, counts 0)
Errors (before anything is written): the in-flight set not a sorted set (WRONGTYPE naming it).
]]
local inflight = KEYS[1]
local flush_prefix = KEYS[2]
--!include check_types
local bad = check_types("buffer_ack", {inflight, "zset"})
if bad then return redis.error_reply(bad) end
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call("ZREM", inflight, ARGV[i])
  redis.call("DEL", flush_prefix .. ARGV[i])
end
return removed
