#!lua
--[[ lease: take up to N queued jobs from the head of the queue and lease them to a worker.

Each leased job gets status "started", its attempt counter n incremented (n is the lease's fencing
token: completion must present it) and an entry in the active set scored by the lease deadline.
Jobs without a priority (the pending list) come first, then the prio set, lowest level first.
Ids whose job is gone (deleted, expired by ttl) or no longer queued (canceled) are dropped and their
tombstone count released. At most 1,000 ids are looked at per call, so a run of tombstones cannot make
one call unbounded; the returned length tells the worker whether more is waiting. A job key that is not
a hash (edited by hand) is replaced by a failed record that says so, so the problem is visible instead
of silently lost.

The queue's control hash is read once per call: a suspended queue leases nothing; a rate limit (at most
"rn" jobs per "rp" ms, counted in a fixed window that starts at the first lease after the previous one
ended: "rw" start, "rc" count) caps the batch, and when it is spent the reply says how long to wait.
A job with a concurrency key ("lk") whose limit ("c:<key>", else "cd") is reached is not leased: it is
set aside in the key's waiting list (stats "lwait" counts them) until a running one gives up its slot
(complete, release, requeue_expired, cancel, delete move one back). Before setting a job aside, the
key's running set is checked once per call and ids no longer started are dropped from it (bounded by
the limit), so a slot a lost path forgot cannot block the key for ever.

KEYS[1] pending: pending list
KEYS[2] active: active sorted set (score = lease deadline, ms)
KEYS[3] job_prefix: job key prefix
KEYS[4] stats: stats hash (field "tomb" = ids in pending that no longer count)
KEYS[5] failed: failed sorted set (score = expiry, ms)
KEYS[6] prio: prio sorted set
KEYS[7] control: control hash (fields "sus", "rn", "rp", "rw", "rc", "cd", "c:<key>")
KEYS[8] limit_running_prefix: running sets prefix (concurrency key -> ids holding its slots)
KEYS[9] limit_waiting_prefix: waiting lists prefix (concurrency key -> ids set aside)
KEYS[10] limit_keys: sorted set of concurrency keys with jobs set aside
ARGV[1] lease_ms: lease length (ms); the deadline is the server's time plus this
ARGV[2] count: maximum number of jobs to lease
ARGV[3] worker: worker name
ARGV[4] failure_keep_ms: how long to keep a failed record (ms)
Returns: {remaining (0 when the pending list and the prio set are both empty), wait (0; -1 the queue is
         suspended; > 0 the rate limit is spent for that many ms), then the leased jobs}:
         leased jobs (8 per job): id, token, func, payload, options, signature, headers, retries
         (payload, options, signature and headers "" when absent; retries: failed runs retried so far, "rt")
]]
local pending = KEYS[1]
local active = KEYS[2]
local job_prefix = KEYS[3]
local stats = KEYS[4]
local failed = KEYS[5]
local prio = KEYS[6]
local control = KEYS[7]
local limit_running_prefix = KEYS[8]
local limit_waiting_prefix = KEYS[9]
local limit_keys = KEYS[10]
local lease_ms = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local worker = ARGV[3]
local failure_keep_ms = ARGV[4]
--!include now_ms
local wanted = count
local ctl = redis.call("HMGET", control, "sus", "rn", "rp", "rw", "rc", "cd")
if ctl[1] then return {1, -1} end
local now = nil
local rate_n = tonumber(ctl[2])
local window_start, window_count
if rate_n then
  now = now_ms()
  local period = tonumber(ctl[3]) or 1000
  window_start, window_count = tonumber(ctl[4]) or 0, tonumber(ctl[5]) or 0
  if now >= window_start + period then window_start, window_count = now, 0 end
  if window_count >= rate_n then return {1, window_start + period - now} end
  wanted = math.min(wanted, rate_n - window_count)
end

-- Pops from the pending list, else from the prio set; says which (only list entries count as tombstones).
local function pop(n)
  local ids = redis.call("LPOP", pending, n)
  if ids then return ids, false end
  local popped = redis.call("ZPOPMIN", prio, n)
  if #popped == 0 then return nil, false end
  ids = {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  return ids, true
end

local ids, from_prio = pop(wanted)
if not ids then return {0, 0} end  -- the idle poll: no clock read, no write
if not now then now = now_ms() end
local deadline = now + lease_ms
local KNOWN = {queued = true, started = true, finished = true, failed = true, canceled = true,
               stopped = true, scheduled = true, deferred = true}
local default_limit = tonumber(ctl[6])
local limits = {}  -- concurrency key -> limit or false, read once per call
local checked = {}

-- May job `id` with concurrency key `ck` start now? Takes the slot if so; else sets the job aside.
local function take_slot(ck, id)
  local limit = limits[ck]
  if limit == nil then
    limit = tonumber(redis.call("HGET", control, "c:" .. ck)) or default_limit or false
    limits[ck] = limit
  end
  if not limit then return true end
  local running = limit_running_prefix .. ck
  if redis.call("SCARD", running) >= limit and not checked[ck] then
    checked[ck] = true
    for _, member in ipairs(redis.call("SMEMBERS", running)) do
      if redis.call("HGET", job_prefix .. member, "s") ~= "started" then redis.call("SREM", running, member) end
    end
  end
  if redis.call("SCARD", running) >= limit then
    redis.call("RPUSH", limit_waiting_prefix .. ck, id)
    redis.call("HINCRBY", stats, "lwait", 1)
    redis.call("ZADD", limit_keys, "NX", now, ck)
    return false
  end
  redis.call("SADD", running, id)
  return true
end

local out = {0, 0}
local got = 0
local tomb_released = 0
local scanned = 0
while true do
  scanned = scanned + #ids
  for _, id in ipairs(ids) do
    local key = job_prefix .. id
    local job = redis.pcall("HMGET", key, "s", "f", "p", "o", "n", "x", "sg", "lk", "hd", "rt")
    if job.err then
      -- Not a hash (edited by hand): replace it with a failed record that says what was found.
      local kind = redis.call("TYPE", key).ok
      redis.call("DEL", key)
      redis.call("HSET", key, "s", "failed", "f", "", "c", now, "te", now,
        "e", "malformed job record: key " .. key .. " held a " .. kind .. ", not a hash; the job was dropped")
      redis.call("PEXPIRE", key, failure_keep_ms)
      redis.call("ZADD", failed, now + tonumber(failure_keep_ms), id)
    elseif job[1] == "queued" and job[8] and not take_slot(job[8], id) then
      -- set aside: its key is at its concurrency limit
    elseif job[1] == "queued" then
      local token = (tonumber(job[5]) or 0) + 1
      redis.call("HSET", key, "s", "started", "n", token, "ts", now, "w", worker)
      if job[6] then redis.call("PERSIST", key) end
      redis.call("ZADD", active, deadline, id)
      out[#out + 1] = id
      out[#out + 1] = token
      out[#out + 1] = job[2] or ""
      out[#out + 1] = job[3] or ""
      out[#out + 1] = job[4] or ""
      out[#out + 1] = job[7] or ""
      out[#out + 1] = job[9] or ""
      out[#out + 1] = tonumber(job[10]) or 0  -- a number whatever the record holds: the reply is parsed as one
      got = got + 1
    elseif job[1] == false then
      -- gone: deleted while queued, or its ttl ran out (a prio entry is never a counted tombstone)
      if not from_prio then tomb_released = tomb_released + 1 end
    elseif redis.call("HDEL", key, "tb") == 1 then
      tomb_released = tomb_released + 1  -- the tombstone a cancel left behind
    elseif not KNOWN[job[1]] then
      redis.call("HSET", key, "s", "failed", "te", now,
        "e", "malformed job record: unknown status '" .. job[1] .. "' in " .. key .. "; the job was dropped")
      redis.call("PEXPIRE", key, failure_keep_ms)
      redis.call("ZADD", failed, now + tonumber(failure_keep_ms), id)
    end
  end
  if got >= wanted or scanned >= 1000 then break end
  ids, from_prio = pop(wanted - got)
  if not ids then break end
end
if tomb_released > 0 then
  local tomb = tonumber(redis.call("HGET", stats, "tomb")) or 0
  if tomb > 0 then redis.call("HINCRBY", stats, "tomb", -math.min(tomb, tomb_released)) end
end
if rate_n and got > 0 then redis.call("HSET", control, "rw", window_start, "rc", window_count + got) end
out[1] = redis.call("LLEN", pending)
if out[1] == 0 then out[1] = redis.call("ZCARD", prio) end
return out
