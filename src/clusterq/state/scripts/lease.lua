#!lua
--[[ lease: take up to N queued jobs from the head of the queue and lease them to a worker.

Each leased job gets status "started", its attempt counter n incremented (n is the lease's fencing
token: completion must present it) and an entry in the active set scored by the lease deadline (one
ZADD per call for the whole batch). The worker asks for a bounded count per call (clusterq.worker.outcomes.
SCRIPT_JOBS) and pipelines several calls, so one call holds the server well under a millisecond.
A leased job costs one HMGET and one HSET; the start time and deadline are made into text once per call
(Redis converts every Lua number argument to text, about as costly as a small command), and a first
lease writes its token as "1".
Jobs without a priority (the pending list) come first, then the prio set, lowest level first.
Ids whose job is gone (deleted, expired by ttl) or no longer queued (canceled) are dropped and their
tombstone count released. At most 1,000 ids are looked at per call, so a run of tombstones cannot make
one call unbounded; the returned length tells the worker whether more is waiting.

Malformed records met in the queue are never dropped silently nor run: each becomes a failed record
whose error says what was wrong ("malformed job record: ..."), kept failure_keep_ms and listed in the
failed registry (lib/fail_record.lua): a job key that is not a hash (replaced), a record without a
status field, an unknown status, a queued record whose attempt counter "n" is not a whole number (it
would fence nothing: the job could run twice), and an ended status (finished, failed, canceled,
stopped) on a record that never ended (no "te") and is not a tombstone. An ended record with "te" is a
stale duplicate of its id and is skipped.

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
Errors (checked before anything is written): a key of the queue of the wrong type (WRONGTYPE naming
         the key: this script's keys, and the running set and waiting list of a concurrency key met in
         the batch; a batch already taken from the queue is put back as it was); lease_ms, count or failure_keep_ms not a whole
         number in range (ERR). When such a key is met after the call already leased jobs, it stops there
         (the rest is put back) and the next call reports it; so does a prio set of the wrong type met
         after jobs were leased from the pending list (the reply's remaining count is then 1, so the
         worker calls again).
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
--!include bump
--!include now_ms
--!include check_types
--!include check_int
--!include fail_record
local MAX_MS = 3153600000000  -- 100 years: clusterq.api.options.MAX_DURATION_S
local bad = check_int("lease", "lease_ms", lease_ms, 0, MAX_MS) or check_int("lease", "count", count, 1, 100000)
  or check_int("lease", "failure_keep_ms", failure_keep_ms, 1, MAX_MS)
if bad then return redis.error_reply(bad) end
failure_keep_ms = tonumber(failure_keep_ms)
local wanted = count
-- The idle poll stays as cheap as it was: the control hash, pending list and prio set are checked by the
-- commands that read or pop them (each fails alone, before anything is written), and the keys written
-- later only once there are jobs (see below).
local ctl = redis.pcall("HMGET", control, "sus", "rn", "rp", "rw", "rc", "cd")
if ctl.err then return redis.error_reply(check_types("lease", {control, "hash"}) or ctl.err) end
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

-- Pops from the pending list, else from the prio set; says which (only list entries count as
-- tombstones), with the prio scores so that put_back can restore the batch exactly.
local function pop(n)
  local ids = redis.pcall("LPOP", pending, n)
  if ids and ids.err then return nil, false, nil, check_types("lease", {pending, "list"}) or ids.err end
  if ids then return ids, false, nil end
  local popped = redis.pcall("ZPOPMIN", prio, n)
  if popped.err then return nil, false, nil, check_types("lease", {prio, "zset"}) or popped.err end
  if #popped == 0 then return nil, false, nil end
  ids = {}
  local scores = {}
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
    scores[#scores + 1] = popped[i + 1]
  end
  return ids, true, scores
end

-- Puts ids[from..] back where pop took them, in their order.
local function put_back(ids, from_prio, scores, from)
  if from_prio then
    local zadd = {}
    for k = from, #ids do
      zadd[#zadd + 1] = scores[k]
      zadd[#zadd + 1] = ids[k]
    end
    if #zadd > 0 then redis.call("ZADD", prio, unpack(zadd)) end
  else
    local back = {}
    for k = #ids, from, -1 do back[#back + 1] = ids[k] end
    if #back > 0 then redis.call("LPUSH", pending, unpack(back)) end
  end
end

local ids, from_prio, scores, wrong = pop(wanted)
if wrong then return redis.error_reply(wrong) end
if not ids then return {0, 0} end  -- the idle poll: no clock read, no write
-- Jobs to lease: the keys written from here on are checked once, and the batch put back if one is broken.
-- (The prio set is not among them: this call writes it only to put back what its own ZPOPMIN took, and
-- reads it last with a ZCARD that tolerates a wrong type; the next call's ZPOPMIN reports it.)
wrong = check_types("lease", {active, "zset", stats, "hash", failed, "zset"})
if wrong then
  put_back(ids, from_prio, scores, 1)
  return redis.error_reply(wrong)
end
if not now then now = now_ms() end
local deadline = now + lease_ms
-- Numbers written once per job go as text made once per call: Redis converts every Lua number argument
-- to text, which costs about as much as a small command.
local now_text, deadline_text = string.format("%d", now), string.format("%d", deadline)
local KNOWN = {queued = true, started = true, finished = true, failed = true, canceled = true,
               stopped = true, scheduled = true, deferred = true}
local ENDED = {finished = true, failed = true, canceled = true, stopped = true}
local default_limit = tonumber(ctl[6])
local limits = {}  -- concurrency key -> limit or false, read once per call
local checked = {}

-- The concurrency limit of key ck (false: none), read once per call; nil and an error message when the
-- key's running set or waiting list has the wrong type.
local function limit_of(ck)
  local limit = limits[ck]
  if limit == nil then
    limit = tonumber(redis.call("HGET", control, "c:" .. ck)) or default_limit or false
    if limit then
      local wrong = check_types("lease", {limit_running_prefix .. ck, "set", limit_waiting_prefix .. ck, "list"})
      if wrong then return nil, wrong end
    end
    limits[ck] = limit
  end
  return limit
end

-- May job `id` with concurrency key `ck` start now? Takes the slot if so; else sets the job aside.
local function take_slot(ck, id)
  local limit = limits[ck]
  if not limit then return true end
  local running = limit_running_prefix .. ck
  if redis.call("SCARD", running) >= limit and not checked[ck] then
    checked[ck] = true
    for _, member in ipairs(redis.call("SMEMBERS", running)) do
      if redis.pcall("HGET", job_prefix .. member, "s") ~= "started" then redis.call("SREM", running, member) end
    end
  end
  if redis.call("SCARD", running) >= limit then
    redis.call("RPUSH", limit_waiting_prefix .. ck, id)
    bump(stats, "lwait", 1)
    redis.call("ZADD", limit_keys, "NX", now, ck)
    return false
  end
  redis.call("SADD", running, id)
  return true
end

local function malformed(key, id, reason)
  fail_record(key, id, reason, now, failed, failure_keep_ms)
end

local out = {0, 0}
local leased_z = {}  -- deadline, id pairs: the active set is written once per call (one ZADD, not one per job)
local got = 0
local tomb_released = 0
local scanned = 0
while true do
  -- Read the batch's records first (reads only): a broken concurrency key puts the batch back untouched.
  local records = {}
  local keys = {}
  for k, id in ipairs(ids) do
    local key = job_prefix .. id
    local job = redis.pcall("HMGET", key, "s", "f", "p", "o", "n", "x", "sg", "lk", "te", "tb", "hd", "rt")
    records[k] = job
    keys[k] = key
    if not job.err and job[1] == "queued" and job[8] then
      local _, wrong = limit_of(job[8])
      if wrong then
        put_back(ids, from_prio, scores, 1)
        if scanned == 0 then return redis.error_reply(wrong) end
        ids = nil
        break
      end
    end
  end
  if not ids then break end
  scanned = scanned + #ids
  for k, id in ipairs(ids) do
    local key = keys[k]
    local job = records[k]
    if job.err then
      malformed(key, id, "key " .. key .. " held a " .. redis.call("TYPE", key).ok .. ", not a hash")
    elseif job[1] == "queued" and job[5] and not (string.find(job[5], "^%d+$") and #job[5] <= 15) then
      malformed(key, id, "attempt counter n is '" .. job[5] .. "', not a whole number (it fences the job's runs)")
    elseif job[1] == "queued" and job[8] and not take_slot(job[8], id) then
      -- set aside: its key is at its concurrency limit
    elseif job[1] == "queued" then
      -- The first lease (no "n" yet) writes token "1" as text; a later one converts its number.
      local token = job[5] and tonumber(job[5]) + 1 or 1
      redis.call("HSET", key, "s", "started", "n", job[5] and token or "1", "ts", now_text, "w", worker)
      if job[6] then redis.call("PERSIST", key) end
      leased_z[#leased_z + 1] = deadline_text
      leased_z[#leased_z + 1] = id
      if #leased_z >= 1000 then  -- unpack's stack is bounded: a huge count writes in slices
        redis.call("ZADD", active, unpack(leased_z))
        leased_z = {}
      end
      out[#out + 1] = id
      out[#out + 1] = token
      out[#out + 1] = job[2] or ""
      out[#out + 1] = job[3] or ""
      out[#out + 1] = job[4] or ""
      out[#out + 1] = job[7] or ""
      out[#out + 1] = job[11] or ""
      out[#out + 1] = job[12] and tonumber(job[12]) or 0  -- a number whatever the record holds: the reply is parsed as one
      got = got + 1
    elseif job[1] == false then
      if job[2] or job[3] or job[4] or job[5] or redis.call("EXISTS", key) == 1 then
        malformed(key, id, "no status field in " .. key)
      elseif not from_prio then
        -- gone: deleted while queued, or its ttl ran out (a prio entry is never a counted tombstone)
        tomb_released = tomb_released + 1
      end
    elseif job[10] then
      redis.call("HDEL", key, "tb")
      tomb_released = tomb_released + 1  -- the tombstone a cancel (or take) left behind
    elseif not KNOWN[job[1]] then
      malformed(key, id, "unknown status '" .. job[1] .. "' in " .. key)
    elseif ENDED[job[1]] and not job[9] then
      malformed(key, id, "status '" .. job[1] .. "' in " .. key .. " but the job never ended (no end time) and its id was queued")
    end
  end
  if got >= wanted or scanned >= 1000 then break end
  ids, from_prio, scores = pop(wanted - got)
  if not ids then break end
end
if #leased_z > 0 then redis.call("ZADD", active, unpack(leased_z)) end
if tomb_released > 0 then
  local tomb = tonumber(redis.call("HGET", stats, "tomb")) or 0
  if tomb > 0 then bump(stats, "tomb", -math.min(tomb, tomb_released)) end
end
if rate_n and got > 0 then redis.call("HSET", control, "rw", window_start, "rc", window_count + got) end
out[1] = redis.call("LLEN", pending)
if out[1] == 0 then
  local waiting = redis.pcall("ZCARD", prio)
  out[1] = type(waiting) == "number" and waiting or 1  -- a prio set of the wrong type: the next call says so
end
return out
