-- function: session_touch
-- Read a session and slide its expiry: it now expires idle TTL after this
-- call, never later than its absolute expiry. The session must belong to the
-- org and user asked for; any other answers exactly like a missing one, and
-- nothing is written then. A session that is gone leaves the index.
-- KEYS[1]: session:{<org_id>:<user_id>}           hash, the index
-- KEYS[2]: session:{<org_id>:<user_id>}:<handle>  hash, the session
-- ARGV[1]: handle (KEYS[2] must be KEYS[1] .. ':' .. handle)
-- ARGV[2]: org_id the caller acts for
-- ARGV[3]: user_id the caller asks for
-- returns: the session's fields as a flat list (field, value, ...), empty when
--          there is no such session for this org and user
-- errors:  "INVALID ..." on bad arguments

local index, key, handle, org_id, user_id = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
if #KEYS ~= 2 or not handle or handle == '' or key ~= index .. ':' .. handle
    or not org_id or org_id == '' or not user_id or user_id == '' then
  return redis.error_reply('INVALID session_touch: KEYS[2] must be KEYS[1]:<handle>, with org and user')
end

local fields = redis.call('HMGET', key, 'idle_ttl_ms', 'absolute_expires_at', 'org_id', 'user_id')
local idle_ms = tonumber(fields[1])
if not idle_ms then
  redis.call('HDEL', index, handle)
  return {}
end
if fields[3] ~= org_id or fields[4] ~= user_id then
  return {}
end
local absolute_at = tonumber(fields[2]) or 0
local now = now_ms()
local expires_at = now + idle_ms
if absolute_at > 0 and absolute_at < expires_at then
  expires_at = absolute_at
end
if expires_at <= now then
  redis.call('DEL', key)
  redis.call('HDEL', index, handle)
  return {}
end

redis.call('HSET', key, 'last_seen_at', now, 'expires_at', expires_at)
redis.call('PEXPIREAT', key, expires_at)
redis.call('HSET', index, handle, expires_at)
local index_ttl = redis.call('PTTL', index)
if index_ttl < 0 or now + index_ttl < expires_at then
  redis.call('PEXPIREAT', index, expires_at)
end
return redis.call('HGETALL', key)
