-- function: session_revoke
-- Revoke one session: delete it and its index entry (the index goes when empty).
-- KEYS[1]: session:{<org_id>:<user_id>}           hash, the index
-- KEYS[2]: session:{<org_id>:<user_id>}:<handle>  hash, the session
-- ARGV[1]: handle (KEYS[2] must be KEYS[1] .. ':' .. handle)
-- returns: 1 when a live session was revoked, 0 when there was none
-- errors:  "INVALID ..." on bad arguments

local index, key, handle = KEYS[1], KEYS[2], ARGV[1]
if #KEYS ~= 2 or not handle or handle == '' or key ~= index .. ':' .. handle then
  return redis.error_reply('INVALID session_revoke: KEYS[2] must be KEYS[1]:<handle>')
end
local removed = redis.call('DEL', key)
redis.call('HDEL', index, handle)
if redis.call('HLEN', index) == 0 then
  redis.call('DEL', index)
end
return removed
