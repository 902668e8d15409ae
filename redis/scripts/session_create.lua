-- name: session_create
-- version: 1
-- Create one session of a user and register it in the user's session index.
-- Expired index entries are pruned; with a session cap the sessions closest
-- to expiry are evicted to make room.
-- KEYS[1]: session:{user_id}               hash, the user's index: session_id -> expires_at_ms
-- KEYS[2]: session:{user_id}:<session_id>  hash, the session
-- ARGV[1]: session_id (KEYS[2] must be KEYS[1] .. ':' .. session_id)
-- ARGV[2]: user_id
-- ARGV[3]: org_id
-- ARGV[4]: data, a JSON object (stored as is)
-- ARGV[5]: idle TTL in ms, an integer >= 1: the session expires this long after its last use
-- ARGV[6]: absolute TTL in ms, an integer >= 0: hard limit from creation (0 = none)
-- ARGV[7]: max sessions per user, an integer >= 0 (0 = no cap)
-- returns: {created_at_ms, expires_at_ms, evicted}
-- errors:  "INVALID ..." on bad arguments, "EXISTS ..." when the session id is taken

local index, key = KEYS[1], KEYS[2]
local session_id, user_id, org_id, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local idle_ms, absolute_ms, max_sessions = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local function positive_int(n, min)
  return n and n == math.floor(n) and n >= min and n <= 31536000000
end
if #KEYS ~= 2 or not session_id or session_id == '' or key ~= index .. ':' .. session_id then
  return redis.error_reply('INVALID session_create: KEYS[2] must be KEYS[1]:<session_id>')
end
if not user_id or user_id == '' or not org_id or org_id == '' then
  return redis.error_reply('INVALID session_create: user_id and org_id are required')
end
if not data or string.sub(data, 1, 1) ~= '{' then
  return redis.error_reply('INVALID session_create: data must be a JSON object')
end
if not positive_int(idle_ms, 1) or not positive_int(absolute_ms, 0)
    or not positive_int(max_sessions, 0) then
  return redis.error_reply('INVALID session_create: TTLs and the cap must be non-negative integers (idle >= 1)')
end
if redis.call('EXISTS', key) == 1 then
  return redis.error_reply('EXISTS session_create: session id already in use')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
if max_sessions > 0 and #live >= max_sessions then
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
redis.call('HSET', index, session_id, expires_at)
local index_ttl = redis.call('PTTL', index)
if index_ttl < 0 or now + index_ttl < expires_at then
  redis.call('PEXPIREAT', index, expires_at)
end
return {now, expires_at, evicted}
