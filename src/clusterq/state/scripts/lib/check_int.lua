--[[ check_int(script, name, value, low, high): an error message when argument value (a string) is not a
whole number from low to high, else nil. Called before a script's first write, for every number that
reaches a command Redis may refuse (PEXPIRE and EXPIRE take whole numbers that must not overflow, LPOP
and LTRIM whole counts, ZADD no NaN), so a bad argument stops the call with nothing written.
The caller returns redis.error_reply(message): "ERR <script>: <name> '<value>' is not a whole number
from <low> to <high>; nothing was written".
]]
local function check_int(script, name, value, low, high)
  local number = tonumber(value)
  if number and number == math.floor(number) and number >= low and number <= high then return nil end
  return "ERR " .. script .. ": " .. name .. " '" .. tostring(value) .. "' is not a whole number from " ..
    string.format("%d", low) .. " to " .. string.format("%d", high) .. "; nothing was written"
end
