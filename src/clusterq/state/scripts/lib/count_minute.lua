--[[ count_minute(key, kind, n): included by the scripts that count the queue's history (enqueue, complete,
requeue_expired). Adds n to field kind ("enqueued", "finished", "failed", "retried") of key, the queue's
hash of this minute's counts (QueueKeys.counts, passed by the caller as a declared key). A script sums its
jobs in locals and calls this once per kind per call, not per job.

The first count of a kind in the minute (HINCRBY answers n) sets the key's expiry, so a minute costs at
most one EXPIRE per kind: 604800 s, seven days (clusterq.state.keys.HISTORY_RETENTION_S; a contract test
holds the two equal).
]]
local function count_minute(key, kind, n)
  if n > 0 and redis.call("HINCRBY", key, kind, n) == n then redis.call("EXPIRE", key, 604800) end
end
