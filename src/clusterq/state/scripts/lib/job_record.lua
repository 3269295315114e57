--[[ job_record(status, now, a, i): the fields of a new job record, the one layout shared by every script
that creates jobs (enqueue, schedule, cron_tick, defer, debounce). Included with an include line.

a[i] is the job's id, followed by the eleven values every creating call sends after it (twelve in all,
see enqueue.lua's header): function path, payload, options JSON, meta, ttl (s), maximum attempts, id
flag, signature, priority level, concurrency key, headers JSON (the hooks' str -> str map, stored as
"hd", covered by the signature). "" (or nil) means absent; ttl and priority "0" mean none.
Returns: the HSET argument list (callers may append fields of their own), and the ttl in seconds or nil.
]]
local function job_record(status, now, a, i)
  local fields = {"s", status, "f", a[i + 1], "c", now}
  local function add(name, value)
    if value and value ~= "" then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
  end
  add("p", a[i + 2])
  add("o", a[i + 3])
  add("m", a[i + 4])
  local ttl = tonumber(a[i + 5])
  if ttl and ttl > 0 then add("x", "1") else ttl = nil end
  add("ma", a[i + 6])
  add("sg", a[i + 8])
  if (tonumber(a[i + 9]) or 0) > 0 then add("pr", a[i + 9]) end
  add("lk", a[i + 10])
  add("hd", a[i + 11])
  return fields, ttl
end
