--[[ check_types(script, pairs): the first of the given keys whose type is wrong, as an error message (nil
when all are right). Included by every script that writes, and called before its first write: Redis
keeps the writes a script made before a runtime error, so a key of the wrong type (edited by hand, a
stray SET) must stop the call before anything changes, with an error that names the key.

pairs is a flat list {key, expected type, key, expected type, ...}; a missing key ("none") is always
right. One TYPE per key (O(1)). The caller returns redis.error_reply(message): a "WRONGTYPE <script>: key
<key> holds a <type>, not a <expected>; nothing was written" reply, which names the queue's key so the
caller can set that queue aside (clusterq.state.transitions.broken_key reads it back).
]]
local function check_types(script, pairs)
  for i = 1, #pairs, 2 do
    local found = redis.call("TYPE", pairs[i]).ok
    if found ~= "none" and found ~= pairs[i + 1] then
      return "WRONGTYPE " .. script .. ": key " .. pairs[i] .. " holds a " .. found .. ", not a " .. pairs[i + 1] ..
        "; nothing was written"
    end
  end
  return nil
end
