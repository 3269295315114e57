#!lua
--[[ configure: set or clear fields of a queue's control hash (suspend, rate limit, concurrency limits),
then wake the queue's workers so that they look again at once (after a resume or a raised limit).

KEYS[1] control: control hash
KEYS[2] wake_channel: wake channel
ARGV[1..] fields (2 per field): field, value
          value "" deletes the field
Returns: CONFIGURED
Errors (before anything is written): the control key not a hash (WRONGTYPE naming it).
]]
local control = KEYS[1]
local wake_channel = KEYS[2]
local CODE = {CONFIGURED = 1}
--!include check_types
local bad = check_types("configure", {control, "hash"})
if bad then return redis.error_reply(bad) end
local set = {}
local del = {}
for i = 1, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if value == "" then del[#del + 1] = field else
    set[#set + 1] = field
    set[#set + 1] = value
  end
end
if #del > 0 then redis.call("HDEL", control, unpack(del)) end
if #set > 0 then redis.call("HSET", control, unpack(set)) end
redis.call("SPUBLISH", wake_channel, "1")
return CODE.CONFIGURED
