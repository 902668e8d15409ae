-- name: session_list
-- version: 1
-- The live sessions of a user; expired index entries are pruned on the way.
-- KEYS[1]: session:{user_id}  hash, the user's index
-- returns: flat list {session_id, expires_at_ms, ...} of live sessions

local index = KEYS[1]
if #KEYS ~= 1 then
  return redis.error_reply('INVALID session_list: expected 1 key')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
local flat = redis.call('HGETALL', index)
for i = 1, #flat, 2 do
  local exp = tonumber(flat[i + 1]) or 0
  if exp > now and redis.call('EXISTS', index .. ':' .. flat[i]) == 1 then
    live[#live + 1] = flat[i]
    live[#live + 1] = flat[i + 1]
  else
    redis.call('HDEL', index, flat[i])
  end
end
return live
