-- name: session_revoke_all
-- version: 1
-- Revoke every session of one user, and nothing else. The session keys are
-- derived from the index key (KEYS[1] .. ':' .. session_id); they share its
-- hash tag, so on a Cluster they live in the same slot as KEYS[1].
-- KEYS[1]: session:{user_id}  hash, the user's index
-- returns: the number of live sessions revoked
-- errors:  "INVALID ..." on bad arguments

local index = KEYS[1]
if #KEYS ~= 1 then
  return redis.error_reply('INVALID session_revoke_all: expected 1 key')
end
local removed = 0
local ids = redis.call('HKEYS', index)
for i = 1, #ids do
  removed = removed + redis.call('DEL', index .. ':' .. ids[i])
end
redis.call('DEL', index)
return removed
