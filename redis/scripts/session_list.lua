-- function: session_list
-- flags: no-writes
-- The live sessions of one user of one org, as handles (the SHA-256 of each
-- session id: enough to show or revoke a session, useless to sign in with).
-- Expired entries are skipped here and pruned by session_create/session_touch.
-- KEYS[1]: session:{<org_id>:<user_id>}  hash, the index
-- returns: flat list {handle, expires_at_ms, ...} of live sessions

local index = KEYS[1]
if #KEYS ~= 1 then
  return redis.error_reply('INVALID session_list: expected 1 key')
end
local now = now_ms()
local live = {}
local flat = redis.call('HGETALL', index)
for i = 1, #flat, 2 do
  local exp = tonumber(flat[i + 1]) or 0
  if exp > now and redis.call('EXISTS', index .. ':' .. flat[i]) == 1 then
    live[#live + 1] = flat[i]
    live[#live + 1] = flat[i + 1]
  end
end
return live
