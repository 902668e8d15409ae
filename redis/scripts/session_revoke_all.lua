-- function: session_revoke_all
-- Revoke every session of one user of one org, and nothing else. The session
-- keys are derived from the index key (KEYS[1] .. ':' .. handle); they share
-- its hash tag {<org_id>:<user_id>}, so on a Cluster they live in its slot.
-- KEYS[1]: session:{<org_id>:<user_id>}  hash, the index
-- returns: the number of live sessions revoked
-- errors:  "INVALID ..." on bad arguments

local index = KEYS[1]
if #KEYS ~= 1 then
  return redis.error_reply('INVALID session_revoke_all: expected 1 key')
end
local removed = 0
local handles = redis.call('HKEYS', index)
for i = 1, #handles do
  removed = removed + redis.call('DEL', index .. ':' .. handles[i])
end
redis.call('DEL', index)
return removed
