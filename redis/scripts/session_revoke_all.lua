-- function: session_revoke_all
-- Revoke sessions of one user of one org, and nothing else, at most COUNT per
-- call: the caller repeats it until nothing remains (SessionStore.revoke_all
-- does). session_create caps a user's index at MAX_SESSIONS live handles, so
-- one call of the default COUNT ends them all; an older, larger index takes
-- several bounded calls. The session keys are derived from the index key
-- (KEYS[1] .. ':' .. handle); they share its hash tag {<org_id>:<user_id>},
-- so on a Cluster they live in its slot.
-- KEYS[1]: session:{<org_id>:<user_id>}  hash, the index
-- ARGV[1]: (optional) count, handles to revoke in this call, an integer 1..5000
--          (default MAX_SESSIONS)
-- returns: with ARGV[1]: {live sessions revoked, handles remaining in the index};
--          without (older callers): the number of live sessions revoked
-- errors:  "INVALID ..." on bad arguments

local index = KEYS[1]
local count = MAX_SESSIONS
if ARGV[1] ~= nil then
  count = int_arg(ARGV[1], 1, 5000)
end
if #KEYS ~= 1 or not count then
  return redis.error_reply('INVALID session_revoke_all: expected 1 key and a count 1..5000')
end
local removed = 0
local handles = redis.call('HRANDFIELD', index, count)
for i = 1, #handles do
  -- lint: allow lua-key-from-argv the key is KEYS[1] .. ':' .. a handle read from that index; ARGV only sets how many
  removed = removed + redis.call('DEL', index .. ':' .. handles[i])
  redis.call('HDEL', index, handles[i])
end
if ARGV[1] == nil then
  return removed
end
return {removed, redis.call('HLEN', index)}
