-- function: session_get
-- flags: no-writes
-- Read a session without touching it (FCALL_RO: also on a replica). The
-- session must belong to the org and user asked for; any other answers
-- exactly like a missing one.
-- KEYS[1]: session:{<org_id>:<user_id>}:<handle>  hash, the session
-- ARGV[1]: org_id the caller acts for
-- ARGV[2]: user_id the caller asks for
-- returns: the session's fields as a flat list (field, value, ...), empty when
--          there is no live session for this org and user
-- errors:  "INVALID ..." on bad arguments

local key, org_id, user_id = KEYS[1], ARGV[1], ARGV[2]
if #KEYS ~= 1 or not org_id or org_id == '' or not user_id or user_id == '' then
  return redis.error_reply('INVALID session_get: expected 1 key, an org_id and a user_id')
end
local fields = redis.call('HMGET', key, 'org_id', 'user_id', 'expires_at')
if fields[1] ~= org_id or fields[2] ~= user_id or (tonumber(fields[3]) or 0) <= now_ms() then
  return {}
end
return redis.call('HGETALL', key)
