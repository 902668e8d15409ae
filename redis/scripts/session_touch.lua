-- name: session_touch
-- version: 1
-- Read a session and slide its expiry: it now expires idle TTL after this
-- call, never later than its absolute expiry. A session that is gone is
-- dropped from the user's index.
-- KEYS[1]: session:{user_id}               hash, the user's index
-- KEYS[2]: session:{user_id}:<session_id>  hash, the session
-- ARGV[1]: session_id (KEYS[2] must be KEYS[1] .. ':' .. session_id)
-- returns: the session's fields as a flat list (field, value, ...), empty when
--          there is no such session
-- errors:  "INVALID ..." on bad arguments

local index, key, session_id = KEYS[1], KEYS[2], ARGV[1]
if #KEYS ~= 2 or not session_id or session_id == '' or key ~= index .. ':' .. session_id then
  return redis.error_reply('INVALID session_touch: KEYS[2] must be KEYS[1]:<session_id>')
end

local fields = redis.call('HMGET', key, 'idle_ttl_ms', 'absolute_expires_at')
local idle_ms = tonumber(fields[1])
if not idle_ms then
  redis.call('HDEL', index, session_id)
  return {}
end
local absolute_at = tonumber(fields[2]) or 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires_at = now + idle_ms
if absolute_at > 0 and absolute_at < expires_at then
  expires_at = absolute_at
end
if expires_at <= now then
  redis.call('DEL', key)
  redis.call('HDEL', index, session_id)
  return {}
end

redis.call('HSET', key, 'last_seen_at', now, 'expires_at', expires_at)
redis.call('PEXPIREAT', key, expires_at)
redis.call('HSET', index, session_id, expires_at)
local index_ttl = redis.call('PTTL', index)
if index_ttl < 0 or now + index_ttl < expires_at then
  redis.call('PEXPIREAT', index, expires_at)
end
return redis.call('HGETALL', key)
