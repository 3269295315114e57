#!lua
--[[ defer: create a job that waits for other jobs (its parents) before it joins its queue.

The job gets status "deferred" and an entry in the deferred registry. It remembers each parent (field
"d:<parent handle>" = "w", or "a" when that parent may fail) and how many are still awaited ("dn").
For each parent an intent "r<TAB>parent handle<TAB>child id" goes to this queue's outbox in the same
step: the forwarder registers the child with the parent (in the parent's slot), then removes the intent,
so a producer that dies half-way leaves work a worker finishes instead of a child nobody will release.
With no parents the job waits for a group to release it (Group callbacks).

KEYS[1] deferred: deferred sorted set (score = creation time, ms)
KEYS[2] job_prefix: job key prefix
KEYS[3] outbox: outbox sorted set
ARGV[1] at_front: "1" to join the front of the queue when released, else "0"
ARGV[2] job_width: how many values describe the job (N, 12 today), so the parents are found whatever N is
ARGV[3] id: the job's id; ARGV[3..2+N] are the job, as in enqueue.lua
ARGV[4] func: function path
ARGV[5] payload: payload
ARGV[6] options: options JSON
ARGV[7] meta: meta
ARGV[8] ttl_s: ttl in seconds
ARGV[9] max_attempts: maximum attempts
ARGV[10] flag: flag ("1" fresh id, checked all the same; "u" unique, "0")
ARGV[11] signature: signature ("" = unsigned)
ARGV[12] priority: priority ("0" = none; used when the job is released)
ARGV[13] concurrency_key: concurrency key ("" = none)
ARGV[14] headers: headers JSON ("" = none; stored as "hd")
ARGV[3+N..] parents (2 per parent): parent, mode
          parent handle, and "w" (must finish) or "a" (may fail)
Returns: CREATED, EXISTED (a job with that id already existed; nothing changed), DUPLICATE (unique only: a
         job with that id is scheduled, queued, started or deferred)
Errors (before anything is written): the deferred or outbox set of the wrong type (WRONGTYPE naming it); a
         ttl as in enqueue.lua (ERR).
]]
local deferred = KEYS[1]
local job_prefix = KEYS[2]
local outbox = KEYS[3]
local at_front = ARGV[1]
local job_width = tonumber(ARGV[2])
local id = ARGV[3]
local func = ARGV[4]  -- the job's values are also read by job_record, by position
local payload = ARGV[5]
local options = ARGV[6]
local meta = ARGV[7]
local ttl_s = ARGV[8]
local max_attempts = ARGV[9]
local flag = ARGV[10]
local signature = ARGV[11]
local priority = ARGV[12]
local concurrency_key = ARGV[13]
local headers = ARGV[14]
local CODE = {CREATED = 1, EXISTED = 0, DUPLICATE = -1}
--!include job_record
--!include now_ms
--!include check_types
--!include check_int
local bad = check_types("defer", {deferred, "zset", outbox, "zset"})
  or check_int("defer", "job " .. id .. ": ttl_s", ttl_s, 0, 3153600000)
if bad then return redis.error_reply(bad) end
local now = now_ms()
local first = 3 + job_width
local key = job_prefix .. id
if redis.call("EXISTS", key) == 1 then  -- a fresh id too: redis-py may resend the call
  local status = flag == "u" and redis.pcall("HGET", key, "s")
  local live = {queued = true, scheduled = true, started = true, deferred = true}
  if type(status) == "string" and live[status] then return CODE.DUPLICATE end
  return CODE.EXISTED
end
local fields, ttl = job_record("deferred", now, ARGV, 3)
fields[#fields + 1] = "dn"
fields[#fields + 1] = (#ARGV - first + 1) / 2
if at_front == "1" then fields[#fields + 1] = "df"; fields[#fields + 1] = "1" end
for i = first, #ARGV, 2 do
  local parent, parent_mode = ARGV[i], ARGV[i + 1]
  fields[#fields + 1] = "d:" .. parent
  fields[#fields + 1] = parent_mode
end
redis.call("HSET", key, unpack(fields))
if ttl then redis.call("EXPIRE", key, ttl) end
redis.call("ZADD", deferred, now, id)
for i = first, #ARGV, 2 do
  local parent = ARGV[i]
  redis.call("ZADD", outbox, now, "r\t" .. parent .. "\t" .. id)
end
return CODE.CREATED
