-- function: cache_get_or_lock
-- Read a cached value; when it is stale or missing, try to take the
-- recompute lock (stampede protection: of all callers that find the value
-- stale or missing, exactly one gets the lock and recomputes, the others use
-- the stale value or wait).
-- KEYS[1]: cache:{<scope>}:<key>      string, the value
-- KEYS[2]: cachelock:{<scope>}:<key>  string, the recompute lock (holder's token)
-- ARGV[1]: stale grace in ms, an integer >= 0
-- ARGV[2]: lock token, non-empty
-- ARGV[3]: lock TTL in ms, an integer >= 1
-- returns: {state, value?} where state is 1 fresh; 2 stale or missing and the
--          caller now holds the lock: recompute; 3 stale or missing and
--          another caller holds the lock. value is present whenever the key exists
-- errors:  "INVALID ..." on bad arguments

local stale_ms, token, lock_ms = int_arg(ARGV[1], 0), ARGV[2], int_arg(ARGV[3], 1)
if #KEYS ~= 2 or not stale_ms or not token or token == '' or not lock_ms then
  return redis.error_reply('INVALID cache_get_or_lock: expected 2 keys, a grace >= 0, a token and a lock TTL >= 1')
end

local value = redis.call('GET', KEYS[1])
if value then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl == -1 or ttl > stale_ms then
    return {1, value}
  end
end
local state = 3
if redis.call('SET', KEYS[2], token, 'NX', 'PX', lock_ms) then
  state = 2
end
if value then
  return {state, value}
end
return {state}
