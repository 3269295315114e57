#!lua
--[[ enqueue: create jobs and append them to the queue, skipping any id that already has a job.

A job id that exists (in any state) is left untouched, so a client that retries an enqueue after a
timeout cannot create a second job. The wake channel is published only when the pending list goes
from empty to non-empty: idle workers need one signal, busy ones none.

KEYS[1] pending list
KEYS[2] job key prefix; job hashes are KEYS[2]..id and share its hash tag
KEYS[3] wake channel (sharded pub/sub, same hash tag)
ARGV[1] "1" to push at the front of the queue, else "0"
ARGV[2..] seven values per job: id, function path, payload ("" = no arguments), options JSON ("" = none),
          meta ("" = none), ttl in seconds ("0" = none), maximum attempts ("" = the worker's default)
Returns: array with one entry per job: 1 created, 0 a job with that id already existed
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at_front = ARGV[1] == "1"
local created = {}
local new_ids = {}
for i = 2, #ARGV, 7 do
  local id = ARGV[i]
  local key = KEYS[2] .. id
  if redis.call("EXISTS", key) == 1 then
    created[#created + 1] = 0
  else
    local fields = {"s", "queued", "f", ARGV[i + 1], "c", now}
    if ARGV[i + 2] ~= "" then fields[#fields + 1] = "p"; fields[#fields + 1] = ARGV[i + 2] end
    if ARGV[i + 3] ~= "" then fields[#fields + 1] = "o"; fields[#fields + 1] = ARGV[i + 3] end
    if ARGV[i + 4] ~= "" then fields[#fields + 1] = "m"; fields[#fields + 1] = ARGV[i + 4] end
    local ttl = tonumber(ARGV[i + 5])
    if ttl and ttl > 0 then fields[#fields + 1] = "x"; fields[#fields + 1] = "1" end
    if ARGV[i + 6] ~= "" then fields[#fields + 1] = "ma"; fields[#fields + 1] = ARGV[i + 6] end
    redis.call("HSET", key, unpack(fields))
    if ttl and ttl > 0 then redis.call("EXPIRE", key, ttl) end
    created[#created + 1] = 1
    new_ids[#new_ids + 1] = id
  end
end
if #new_ids > 0 then
  local length
  if at_front then
    -- LPUSH reverses its arguments; push the batch back to front so it keeps its order at the head.
    local reversed = {}
    for i = #new_ids, 1, -1 do reversed[#reversed + 1] = new_ids[i] end
    length = redis.call("LPUSH", KEYS[1], unpack(reversed))
  else
    length = redis.call("RPUSH", KEYS[1], unpack(new_ids))
  end
  if length == #new_ids then redis.call("SPUBLISH", KEYS[3], "1") end
end
return created
