--[[ bump(key, field, by): HINCRBY that cannot stop a script half-way. A counter of a queue's stats hash or
of a group ("pseq", "tomb", "lwait", "retried"; "k", "d", "x") edited by hand into something that is not a
whole number would make HINCRBY fail after the script's first writes; the counter starts again from `by`
instead (they count, they do not fence: a job's attempt counter "n" is never bumped this way). The
caller has checked that the hash is a hash. Returns the new value.
]]
local function bump(key, field, by)
  local value = redis.pcall("HINCRBY", key, field, by)
  if type(value) == "number" then return value end
  redis.call("HSET", key, field, by)
  return by
end
