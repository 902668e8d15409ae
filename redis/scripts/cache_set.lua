-- function: cache_set
-- Store a value with its TTL, record it in its scope's index, register it
-- under its tags, and release the recompute lock when the caller holds it,
-- all at once (a waiter never sees the lock gone before the value is there).
-- The index (one sorted set per scope: value key -> expiry) is what prefix
-- deletion walks, so no service ever needs SCAN; expired entries are pruned here.
-- KEYS[1]: cache:{<scope>}:<key>       string, the value
-- KEYS[2]: cachelock:{<scope>}:<key>   string, the recompute lock
-- KEYS[3]: cacheidx:{<scope>}          sorted set, value key name -> expiry ms
-- KEYS[4..]: cachetag:{<scope>}:<tag>  set of value key names, one per tag
-- ARGV[1]: value
-- ARGV[2]: TTL in ms, an integer >= 1
-- ARGV[3]: stale grace in ms, an integer >= 0 (kept this much longer, served as stale)
-- ARGV[4]: lock token to release, '' for none
-- returns: 1
-- errors:  "INVALID ..." on bad arguments

local value, ttl_ms, stale_ms, token = ARGV[1], int_arg(ARGV[2], 1), int_arg(ARGV[3], 0), ARGV[4]
if #KEYS < 3 then
  return redis.error_reply('INVALID cache_set: expected at least 3 keys')
end
if value == nil or token == nil then
  return redis.error_reply('INVALID cache_set: expected value and lock token')
end
if not ttl_ms or not stale_ms then
  return redis.error_reply('INVALID cache_set: TTL must be an integer >= 1 ms, grace >= 0')
end

local life = ttl_ms + stale_ms
local now = now_ms()
redis.call('SET', KEYS[1], value, 'PX', life)
-- prune at most 100 expired index entries per write: bounded, and ahead of
-- the writes (each write adds one entry)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
if #expired > 0 then
  redis.call('ZREM', KEYS[3], unpack(expired))
end
redis.call('ZADD', KEYS[3], now + life, KEYS[1])
if redis.call('PTTL', KEYS[3]) < life then -- also -1: a new index has no TTL yet
  redis.call('PEXPIRE', KEYS[3], life)
end
for i = 4, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < life then
    redis.call('PEXPIRE', KEYS[i], life)
  end
end
if token ~= '' and redis.call('GET', KEYS[2]) == token then
  redis.call('DEL', KEYS[2])
end
return 1
