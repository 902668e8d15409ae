-- function: cache_delete_prefix
-- Delete the values of one scope whose key name starts with a prefix, by
-- walking the scope's index (never KEYS or SCAN: no service needs them), at
-- most COUNT index entries per call from CURSOR on; the caller repeats it with
-- the returned cursor until it answers -1 (Cache.delete_prefix does). The
-- index is walked from its latest expiry down: cache_set prunes expired
-- entries from the other end, and new entries mostly land at this end, so a
-- concurrent write only makes a step look at an entry twice.
-- KEYS[1]: cacheidx:{<scope>}  sorted set, value key name -> expiry ms
-- ARGV[1]: the full key-name prefix, "cache:{<scope>}:<key prefix>" (with
--          prefix); it must start with the scope's base
-- ARGV[2]: (optional) cursor, an integer >= 0 (0 to start)
-- ARGV[3]: (optional) count, index entries to look at, an integer 1..5000 (default 1000)
-- returns: with ARGV[2]: {next cursor (-1: done), values deleted};
--          without (older callers): the values deleted by one step from 0
-- errors:  "INVALID ..." on bad arguments

local start = ARGV[1]
local cursor, count = 0, 1000
if ARGV[2] ~= nil then
  cursor = int_arg(ARGV[2], 0)
  count = int_arg(ARGV[3] or '1000', 1, 5000)
end
if #KEYS ~= 1 or not start or start == '' or not cursor or not count then
  return redis.error_reply('INVALID cache_delete_prefix: expected the index, a key prefix, a cursor >= 0 and a count 1..5000')
end
local deleted, removed = 0, 0
local names = redis.call('ZRANGE', KEYS[1], cursor, cursor + count - 1, 'REV')
for i = 1, #names do
  local name = names[i]
  if string.sub(name, 1, #start) == start then
    -- lint: allow lua-key-from-argv name is read from this scope's index (KEYS[1]); ARGV only sets the window
    deleted = deleted + redis.call('DEL', name)
    redis.call('ZREM', KEYS[1], name)
    removed = removed + 1
  end
end
if ARGV[2] == nil then
  return deleted
end
local next_cursor = cursor + #names - removed
if #names < count then
  next_cursor = -1
end
return {next_cursor, deleted}
