-- function: cache_delete_prefix
-- Delete every value of one scope whose key name starts with a prefix, by
-- walking the scope's index (never KEYS or SCAN: no service needs them).
-- Values that expired are pruned from the index on the way.
-- KEYS[1]: cacheidx:{<scope>}  sorted set, value key name -> expiry ms
-- ARGV[1]: the full key-name prefix, "cache:{<scope>}:<key prefix>" (with
--          prefix); it must start with the scope's base
-- returns: the number of values deleted
-- errors:  "INVALID ..." on bad arguments

local start = ARGV[1]
if #KEYS ~= 1 or not start or start == '' then
  return redis.error_reply('INVALID cache_delete_prefix: expected the index and a key prefix')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local deleted = 0
local names = redis.call('ZRANGE', KEYS[1], 0, -1)
for i = 1, #names do
  local name = names[i]
  if string.sub(name, 1, #start) == start then
    deleted = deleted + redis.call('DEL', name)
    redis.call('ZREM', KEYS[1], name)
  end
end
return deleted
