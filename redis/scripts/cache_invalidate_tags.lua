-- function: cache_invalidate_tags
-- Delete the values registered under the given tags, and the tag sets,
-- without KEYS/SCAN, at most COUNT values per tag per call (SPOP: each step
-- takes members out of the tag set); the caller repeats it until no member
-- remains (Cache.invalidate_tags does). Tags of up to COUNT values go in one
-- atomic call. Tag sets hold full value key names; only names under ARGV[1]
-- (this scope's value keys, same hash tag, so same slot) are deleted,
-- whatever else a set might contain.
-- KEYS[1]: cacheidx:{<scope>}          sorted set, the scope's index
-- KEYS[2..]: cachetag:{<scope>}:<tag>  sets of value key names
-- ARGV[1]: the scope's value key base, "cache:{<scope>}:" (with prefix)
-- ARGV[2]: (optional) count, members per tag in this call, an integer 1..5000 (default 1000)
-- returns: with ARGV[2]: {values deleted, members remaining in the tag sets};
--          without (older callers): the values deleted
-- errors:  "INVALID ..." on bad arguments

local base = ARGV[1]
local count = 1000
if ARGV[2] ~= nil then
  count = int_arg(ARGV[2], 1, 5000)
end
if #KEYS < 2 or not base or base == '' or not count then
  return redis.error_reply('INVALID cache_invalidate_tags: expected the index, tag keys, a key base and a count 1..5000')
end
local deleted, remaining = 0, 0
for i = 2, #KEYS do
  local members = redis.call('SPOP', KEYS[i], count)
  for j = 1, #members do
    local name = members[j]
    if string.sub(name, 1, #base) == base then
      -- lint: allow lua-key-from-argv name is popped from a tag set of KEYS and must start with this scope's base; ARGV only sets how many
      deleted = deleted + redis.call('DEL', name)
      redis.call('ZREM', KEYS[1], name)
    end
  end
  remaining = remaining + redis.call('SCARD', KEYS[i])
end
if ARGV[2] == nil then
  return deleted
end
return {deleted, remaining}
