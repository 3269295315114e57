--[[ prio_score(level, offset): a job's score in the prio sorted set, level * 2^40 + 2^39 + offset.

Lower levels run first; within a level the offset keeps order: a job pushed at the back gets +sequence,
one pushed at the front -sequence (stats "pseq" is the sequence), so a level is FIFO and the front of a
level is before any job pushed at its back. 2^39 keeps every offset inside its level.
]]
local function prio_score(level, offset)
  return level * 1099511627776 + 549755813888 + offset
end
