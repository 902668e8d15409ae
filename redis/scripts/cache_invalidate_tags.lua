-- function: cache_invalidate_tags
-- Delete every value registered under the given tags, and the tag sets,
-- atomically and without KEYS/SCAN. Tag sets hold full value key names; only
-- names under ARGV[1] (this scope's value keys, same hash tag, so same slot)
-- are deleted, whatever else a set might contain.
-- KEYS[1]: cacheidx:{<scope>}          sorted set, the scope's index
-- KEYS[2..]: cachetag:{<scope>}:<tag>  sets of value key names
-- ARGV[1]: the scope's value key base, "cache:{<scope>}:" (with prefix)
-- returns: the number of values deleted
-- errors:  "INVALID ..." on bad arguments

local base = ARGV[1]
if #KEYS < 2 or not base or base == '' then
  return redis.error_reply('INVALID cache_invalidate_tags: expected the index, tag keys and a key base')
end
local deleted = 0
for i = 2, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members do
    local name = members[j]
    if string.sub(name, 1, #base) == base then
      deleted = deleted + redis.call('DEL', name)
      redis.call('ZREM', KEYS[1], name)
    end
  end
  redis.call('DEL', KEYS[i])
end
return deleted
