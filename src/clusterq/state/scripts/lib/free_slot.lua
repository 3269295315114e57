--[[ free_slot(ck, id, c): included (an "include" line, see scripts/__init__.py) by every script that ends a run of a job
that may hold a concurrency slot: complete, release, requeue_expired, cancel, delete.

c is a table of the including script's keys: running (running sets prefix), waiting (waiting lists prefix),
keys (sorted set of concurrency keys with jobs set aside), stats (stats hash), jobs (job key prefix),
prio (prioritized sorted set), pending (pending list), wake (wake channel): a superset of push_job's. All
share the queue's hash tag. The caller checks the types of the key's running set and waiting list
(slot_keys_bad) before its first write.
]]
--!include bump
--!include push_job
--!include check_types
-- Concurrency limits: a job that held a slot of its key gives it up; the first job of that key set aside
-- by the lease goes back to the head of the queue (of its level), so the freed slot is used. Ids canceled
-- or deleted while set aside are dropped on the way (their tombstone un-counted), at most 10 per call.
local function free_slot(ck, id, c)
  redis.call("SREM", c.running .. ck, id)
  local waiting = c.waiting .. ck
  for _ = 1, 10 do
    local next_id = redis.call("LPOP", waiting)
    if not next_id then break end
    bump(c.stats, "lwait", -1)
    local key = c.jobs .. next_id
    local j = redis.pcall("HMGET", key, "s", "pr", "tb")
    if j.err then j = {"queued", nil, nil} end  -- not a hash: back to the queue, where the lease fails it visibly
    if j[1] == "queued" then
      push_job(next_id, tonumber(j[2]), true, c)
      break
    end
    if j[3] then redis.call("HDEL", key, "tb") end
    if j[3] or not j[1] then
      local tomb = tonumber(redis.call("HGET", c.stats, "tomb")) or 0
      if tomb > 0 then bump(c.stats, "tomb", -1) end
    end
  end
  if redis.call("EXISTS", waiting) == 0 then redis.call("ZREM", c.keys, ck) end
end

-- The running set and waiting list of concurrency key ck, checked (check_types) before a caller writes.
local function slot_keys_bad(script, ck, c)
  return check_types(script, {c.running .. ck, "set", c.waiting .. ck, "list"})
end
