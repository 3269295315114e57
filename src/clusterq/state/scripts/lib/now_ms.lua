--[[ now_ms(): the server's time in milliseconds (TIME, seconds and microseconds). Every script reads the
clock this way, so a script's times and another's always compare.
]]
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
