-- name: cache_get
-- version: 1
-- Read a cached value and say whether it is fresh; optionally take the
-- recompute lock (stampede protection: of all callers that find the value
-- stale or missing, exactly one gets the lock and recomputes, the others use
-- the stale value or wait).
-- A value is stored with TTL = ttl + stale grace; it is fresh while more than
-- the grace remains, stale (still served to waiters) during the grace.
-- KEYS[1]: cache:{namespace}:<key>      string, the value
-- KEYS[2]: cachelock:{namespace}:<key>  string, the recompute lock (holder's token)
-- ARGV[1]: stale grace in ms, an integer >= 0
-- ARGV[2]: lock token, '' to only read
-- ARGV[3]: lock TTL in ms, an integer >= 1 (ignored without a token)
-- returns: {state, value?} where state is
--          1 fresh value; 0 stale or missing, no lock asked;
--          2 stale or missing and the caller now holds the lock: recompute;
--          3 stale or missing and another caller holds the lock
--          value is present whenever the key exists (fresh or stale)
-- errors:  "INVALID ..." on bad arguments

local stale_ms, token, lock_ms = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if #KEYS ~= 2 then
  return redis.error_reply('INVALID cache_get: expected 2 keys')
end
if not stale_ms or stale_ms < 0 or stale_ms ~= math.floor(stale_ms) then
  return redis.error_reply('INVALID cache_get: stale grace must be an integer >= 0')
end
if token == nil or (token ~= '' and (not lock_ms or lock_ms < 1 or lock_ms ~= math.floor(lock_ms))) then
  return redis.error_reply('INVALID cache_get: lock TTL must be an integer >= 1')
end

local value = redis.call('GET', KEYS[1])
if value then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl == -1 or ttl > stale_ms then
    return {1, value}
  end
end
local state = 0
if token ~= '' then
  if redis.call('SET', KEYS[2], token, 'NX', 'PX', lock_ms) then
    state = 2
  else
    state = 3
  end
end
if value then
  return {state, value}
end
return {state}
