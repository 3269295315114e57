#!lua flags=allow-oom
--[[ stop: ask the worker running a job to stop it now.

The reason is stored on the job ("sp"), which the worker's heartbeat also reports, and published on the
queue's wake channel, which the worker serving the queue already listens to: it interrupts the job at
once and records it as stopped (never retried). Only a job that is started and still leased can be
stopped; a queued or scheduled one is canceled instead. Allowed when the server is at maxmemory
(flags=allow-oom): stopping a runaway job is one way out of a full server, and the write is one small field.

KEYS[1] job key prefix
KEYS[2] active sorted set
KEYS[3] wake channel
ARGV[1] job id
ARGV[2] reason (text)
Returns: 1 stop requested, 0 no such job, -1 the job is not running (status unchanged)
]]
local key = KEYS[1] .. ARGV[1]
local status = redis.call("HGET", key, "s")
if not status then return 0 end
if status ~= "started" or not redis.call("ZSCORE", KEYS[2], ARGV[1]) then return -1 end
redis.call("HSET", key, "sp", ARGV[2])
redis.call("SPUBLISH", KEYS[3], "x" .. cjson.encode({ARGV[1], ARGV[2]}))
return 1
