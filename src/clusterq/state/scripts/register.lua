#!lua
--[[ register: add a dependent (a deferred child, or a group) to jobs of this queue, unless they ended.

Runs in the parents' slot. A parent that has not ended keeps the dependent in its dependents set
(flag "dd" on its record), and the script that later ends it writes an outbox intent naming it. A parent
that already ended is reported, and the caller applies its outcome to the dependent itself (the apply is
idempotent, so doing it twice is harmless).

KEYS[1] job_prefix: job key prefix
KEYS[2] dependents_prefix: dependents set prefix (the set of job <id> is dependents_prefix..id)
ARGV[1] dependent: the dependent: "j<TAB>child handle" or "g<TAB>group handle"
ARGV[2..] parents (1 per parent): parent_id
Returns: one value per parent: "" registered (it will report when it ends), or how it ended:
         "finished", "failed", "canceled", "stopped", or "deleted" (no record: deleted or expired)
Errors (before anything is written): a parent's record or dependents set of the wrong type (WRONGTYPE
         naming the key).
]]
local job_prefix = KEYS[1]
local dependents_prefix = KEYS[2]
local dependent = ARGV[1]
--!include check_types
local wanted = {}
for i = 2, #ARGV, 1 do
  wanted[#wanted + 1] = job_prefix .. ARGV[i]
  wanted[#wanted + 1] = "hash"
  wanted[#wanted + 1] = dependents_prefix .. ARGV[i]
  wanted[#wanted + 1] = "zset"
end
local bad = check_types("register", wanted)
if bad then return redis.error_reply(bad) end
local out = {}
for i = 2, #ARGV, 1 do
  local id = ARGV[i]
  local key = job_prefix .. id
  local status = redis.call("HGET", key, "s")
  if not status then
    out[#out + 1] = "deleted"
  elseif status == "finished" or status == "failed" or status == "canceled" or status == "stopped" then
    out[#out + 1] = status
  else
    redis.call("ZADD", dependents_prefix .. id, 0, dependent)
    redis.call("HSET", key, "dd", "1")
    out[#out + 1] = ""
  end
end
return out
