#!lua
--[[ defer: create a job that waits for other jobs (its parents) before it joins its queue.

The job gets status "deferred" and an entry in the deferred registry. It remembers each parent (field
"d:<parent handle>" = "w", or "a" when that parent may fail) and how many are still awaited ("dn").
For each parent an intent "r<TAB>parent handle<TAB>child id" goes to this queue's outbox in the same
step: the forwarder registers the child with the parent (in the parent's slot), then removes the intent,
so a producer that dies half-way leaves work a worker finishes instead of a child nobody will release.
With no parents the job waits for a group to release it (Group callbacks).

KEYS[1] deferred sorted set (score = creation time, ms)
KEYS[2] job key prefix
KEYS[3] outbox sorted set
ARGV[1] "1" to join the front of the queue when released, else "0"
ARGV[2] how many values describe the job (N, 12 today), so the parents are found whatever N is
ARGV[3..2+N] the job, as in enqueue: id, function path, payload, options JSON, meta, ttl in seconds,
           maximum attempts, flag ("1" fresh id, "u" unique, "0"), signature ("" = unsigned),
           priority ("0" = none; used when the job is released), concurrency key ("" = none)
ARGV[3+N..] two values per parent: parent handle, "w" (must finish) or "a" (may fail)
Returns: 1 created, 0 a job with that id already existed (nothing changed), -1 (unique only) a job with
         that id is scheduled, queued, started or deferred
]]
--!include job_record
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[2])
local j = {}
for i = 1, n do j[i] = ARGV[2 + i] end
local first = 3 + n
local id = j[1]
local key = KEYS[2] .. id
if j[8] ~= "1" and redis.call("EXISTS", key) == 1 then
  local status = j[8] == "u" and redis.pcall("HGET", key, "s")
  local live = {queued = true, scheduled = true, started = true, deferred = true}
  if type(status) == "string" and live[status] then return -1 end
  return 0
end
local fields, ttl = job_record("deferred", now, j, 1)
fields[#fields + 1] = "dn"
fields[#fields + 1] = (#ARGV - first + 1) / 2
if ARGV[1] == "1" then fields[#fields + 1] = "df"; fields[#fields + 1] = "1" end
for i = first, #ARGV, 2 do
  fields[#fields + 1] = "d:" .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call("HSET", key, unpack(fields))
if ttl then redis.call("EXPIRE", key, ttl) end
redis.call("ZADD", KEYS[1], now, id)
for i = first, #ARGV, 2 do
  redis.call("ZADD", KEYS[3], now, "r\t" .. ARGV[i] .. "\t" .. id)
end
return 1
