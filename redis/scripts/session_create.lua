-- function: session_create
-- Create one session of a user of an org and register it in that user's
-- session index. The session id never reaches Redis: the caller passes its
-- SHA-256 (the "handle"), which names the key. Expired index entries are
-- pruned; with a session cap the sessions closest to expiry are evicted.
-- KEYS[1]: session:{<org_id>:<user_id>}           hash, the index: handle -> expires_at_ms
-- KEYS[2]: session:{<org_id>:<user_id>}:<handle>  hash, the session
-- ARGV[1]: handle, the hex SHA-256 of the session id (KEYS[2] = KEYS[1] .. ':' .. handle)
-- ARGV[2]: user_id
-- ARGV[3]: org_id (KEYS[1] must carry the tag {<org_id>:<user_id>})
-- ARGV[4]: data, a JSON object (stored as is)
-- ARGV[5]: idle TTL in ms, an integer >= 1: the session expires this long after its last use
-- ARGV[6]: absolute TTL in ms, an integer >= 0: hard limit from creation (0 = none)
-- ARGV[7]: max sessions per user, an integer >= 0; 0 or anything above
--          MAX_SESSIONS (library.lua) is MAX_SESSIONS: every user's index is
--          capped when it is written, so session_list and session_revoke_all
--          stay bounded
-- returns: {created_at_ms, expires_at_ms, evicted}
-- errors:  "INVALID ..." on bad arguments, "EXISTS ..." when the handle is taken

local index, key = KEYS[1], KEYS[2]
local handle, user_id, org_id, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local idle_ms = int_arg(ARGV[5], 1, 31536000000)
local absolute_ms = int_arg(ARGV[6], 0, 31536000000)
local max_sessions = int_arg(ARGV[7], 0, 1000000)
if max_sessions and (max_sessions == 0 or max_sessions > MAX_SESSIONS) then
  max_sessions = MAX_SESSIONS
end
if #KEYS ~= 2 or not handle or #handle ~= 64 or key ~= index .. ':' .. handle then
  return redis.error_reply('INVALID session_create: KEYS[2] must be KEYS[1]:<handle>')
end
if not user_id or user_id == '' or not org_id or org_id == ''
    or not string.find(index, '{' .. org_id .. ':' .. user_id .. '}', 1, true) then
  return redis.error_reply('INVALID session_create: the keys must carry {<org_id>:<user_id>}')
end
if not data or string.sub(data, 1, 1) ~= '{' then
  return redis.error_reply('INVALID session_create: data must be a JSON object')
end
if not idle_ms or not absolute_ms or not max_sessions then
  return redis.error_reply('INVALID session_create: TTLs and the cap must be non-negative integers (idle >= 1)')
end
if redis.call('EXISTS', key) == 1 then
  return redis.error_reply('EXISTS session_create: session id already in use')
end

local now = now_ms()
local expires_at = now + idle_ms
local absolute_at = 0
if absolute_ms > 0 then
  absolute_at = now + absolute_ms
  if absolute_at < expires_at then
    expires_at = absolute_at
  end
end

-- Prune expired entries; collect the live ones for the cap.
local live = {}
local flat = redis.call('HGETALL', index)
for i = 1, #flat, 2 do
  local exp = tonumber(flat[i + 1]) or 0
  if exp <= now then
    redis.call('HDEL', index, flat[i])
  else
    live[#live + 1] = {flat[i], exp}
  end
end
local evicted = 0
if #live >= max_sessions then
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - max_sessions + 1 do
    redis.call('DEL', index .. ':' .. live[i][1])
    redis.call('HDEL', index, live[i][1])
    evicted = evicted + 1
  end
end

redis.call('HSET', key,
  'user_id', user_id, 'org_id', org_id, 'data', data,
  'created_at', now, 'last_seen_at', now, 'expires_at', expires_at,
  'idle_ttl_ms', idle_ms, 'absolute_expires_at', absolute_at)
redis.call('PEXPIREAT', key, expires_at)
redis.call('HSET', index, handle, expires_at)
local index_ttl = redis.call('PTTL', index)
if index_ttl < 0 or now + index_ttl < expires_at then
  redis.call('PEXPIREAT', index, expires_at)
end
return {now, expires_at, evicted}
