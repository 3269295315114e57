--[[ job_record(status, now, a, i): the fields of a new job record, the one layout shared by every script
that creates jobs (enqueue, schedule, cron_tick, defer, debounce). Included with an include line.

a[i] is the job's id, followed by the eleven values every creating call sends after it (twelve in all,
see enqueue.lua's header): function path, payload, options JSON, meta, ttl (s), maximum attempts, id
flag, signature, priority level, concurrency key, headers JSON (the hooks' str -> str map, stored as
"hd", covered by the signature). "" (or nil) means absent; ttl and priority "0" mean none.
Returns: the HSET argument list (callers may append fields of their own), and the ttl in seconds or nil.
]]
local function job_record(status, now, a, i)
  -- Written out field by field (no helper closure): this runs once per job created, on the hot path.
  local fields = {"s", status, "f", a[i + 1], "c", now}
  local n = 6
  local v = a[i + 2]
  if v and v ~= "" then fields[n + 1] = "p"; fields[n + 2] = v; n = n + 2 end
  v = a[i + 3]
  if v and v ~= "" then fields[n + 1] = "o"; fields[n + 2] = v; n = n + 2 end
  v = a[i + 4]
  if v and v ~= "" then fields[n + 1] = "m"; fields[n + 2] = v; n = n + 2 end
  local ttl = nil
  if a[i + 5] ~= "0" then
    ttl = tonumber(a[i + 5])
    if ttl and ttl > 0 then fields[n + 1] = "x"; fields[n + 2] = "1"; n = n + 2 else ttl = nil end
  end
  v = a[i + 6]
  if v and v ~= "" then fields[n + 1] = "ma"; fields[n + 2] = v; n = n + 2 end
  v = a[i + 8]
  if v and v ~= "" then fields[n + 1] = "sg"; fields[n + 2] = v; n = n + 2 end
  v = a[i + 9]
  if v and v ~= "0" and v ~= "" and (tonumber(v) or 0) > 0 then fields[n + 1] = "pr"; fields[n + 2] = v; n = n + 2 end
  v = a[i + 10]
  if v and v ~= "" then fields[n + 1] = "lk"; fields[n + 2] = v; n = n + 2 end
  v = a[i + 11]
  if v and v ~= "" then fields[n + 1] = "hd"; fields[n + 2] = v end
  return fields, ttl
end
