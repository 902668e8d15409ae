-- function: cache_get
-- flags: no-writes
-- Read a cached value and say whether it is fresh (FCALL_RO: also on a replica).
-- A value is stored with TTL = ttl + stale grace; it is fresh while more than
-- the grace remains, stale (still served when asked for) during the grace.
-- KEYS[1]: cache:{<scope>}:<key>  string, the value
-- ARGV[1]: stale grace in ms, an integer >= 0
-- returns: {state, value?}: state 1 fresh, 0 stale or missing; value is
--          present whenever the key exists
-- errors:  "INVALID ..." on bad arguments

local stale_ms = int_arg(ARGV[1], 0)
if #KEYS ~= 1 or not stale_ms then
  return redis.error_reply('INVALID cache_get: expected 1 key and a stale grace >= 0')
end
local value = redis.call('GET', KEYS[1])
if not value then
  return {0}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 or ttl > stale_ms then
  return {1, value}
end
return {0, value}
