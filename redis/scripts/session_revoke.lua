-- name: session_revoke
-- version: 1
-- Revoke one session: delete it and its index entry (the index goes when empty).
-- KEYS[1]: session:{user_id}               hash, the user's index
-- KEYS[2]: session:{user_id}:<session_id>  hash, the session
-- ARGV[1]: session_id (KEYS[2] must be KEYS[1] .. ':' .. session_id)
-- returns: 1 when a live session was revoked, 0 when there was none
-- errors:  "INVALID ..." on bad arguments

local index, key, session_id = KEYS[1], KEYS[2], ARGV[1]
if #KEYS ~= 2 or not session_id or session_id == '' or key ~= index .. ':' .. session_id then
  return redis.error_reply('INVALID session_revoke: KEYS[2] must be KEYS[1]:<session_id>')
end
local removed = redis.call('DEL', key)
redis.call('HDEL', index, session_id)
if redis.call('HLEN', index) == 0 then
  redis.call('DEL', index)
end
return removed
