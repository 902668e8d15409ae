-- name: cache_set
-- version: 1
-- Store a value with its TTL, register it under its tags, and release the
-- recompute lock when the caller holds it, all at once (a waiter never sees
-- the lock gone before the value is there).
-- KEYS[1]: cache:{namespace}:<key>       string, the value
-- KEYS[2]: cachelock:{namespace}:<key>   string, the recompute lock
-- KEYS[3..]: cachetag:{namespace}:<tag>  set of value key names, one per tag
-- ARGV[1]: value
-- ARGV[2]: TTL in ms, an integer >= 1
-- ARGV[3]: stale grace in ms, an integer >= 0 (kept this much longer, served as stale)
-- ARGV[4]: lock token to release, '' for none
-- returns: 1
-- errors:  "INVALID ..." on bad arguments

local value, ttl_ms, stale_ms, token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if #KEYS < 2 then
  return redis.error_reply('INVALID cache_set: expected at least 2 keys')
end
if value == nil or token == nil then
  return redis.error_reply('INVALID cache_set: expected value and lock token')
end
if not ttl_ms or ttl_ms < 1 or ttl_ms ~= math.floor(ttl_ms) then
  return redis.error_reply('INVALID cache_set: TTL must be an integer >= 1 ms')
end
if not stale_ms or stale_ms < 0 or stale_ms ~= math.floor(stale_ms) then
  return redis.error_reply('INVALID cache_set: stale grace must be an integer >= 0')
end

local life = ttl_ms + stale_ms
redis.call('SET', KEYS[1], value, 'PX', life)
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  local tag_ttl = redis.call('PTTL', KEYS[i])
  if tag_ttl < life then -- also -1: a new set has no TTL yet
    redis.call('PEXPIRE', KEYS[i], life)
  end
end
if token ~= '' and redis.call('GET', KEYS[2]) == token then
  redis.call('DEL', KEYS[2])
end
return 1
