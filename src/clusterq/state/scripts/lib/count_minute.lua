--[[ count_minute(key, kind, n, now): included by the scripts that count the queue's history (enqueue,
complete, requeue_expired). Adds n to field "<minute>:<kind>" of key, where minute is now (ms) // 60000
and kind one of "enqueued", "finished", "failed", "retried". now is the server's clock (complete,
requeue_expired) or the client's (enqueue: it sends its minute, already divided, and calls
count_field(key, minute .. ":enqueued", n), which costs no number-to-string conversion). key is the
queue's history hash of the current half hour (QueueKeys.counts, passed by the caller as a declared key;
the half hour is the caller's clock, so readers go by the field). A script sums its jobs in locals and
calls this once per kind per call, not per job.

A new field (HINCRBY answers n) sets the key's expiry, so a key costs at most one EXPIRE per kind per
minute: 604800 s, seven days (clusterq.state.keys.HISTORY_RETENTION_S; a contract test holds the two
equal). At 30 minutes x 4 kinds a key stays a small listpack (at most 120 fields).
The history is a side record: it is written with pcall, last, so a counts key edited into another type
(or a field into a non-number) costs that minute's count, never the transition the script made.
]]
local function count_field(key, field, n)
  -- "1" rather than the number 1: a Lua number argument costs Redis a conversion to text.
  if n > 0 and redis.pcall("HINCRBY", key, field, n == 1 and "1" or n) == n then
    redis.call("EXPIRE", key, 604800)
  end
end

local function count_minute(key, kind, n, now)
  count_field(key, math.floor(now / 60000) .. ":" .. kind, n)
end
