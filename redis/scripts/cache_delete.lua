-- function: cache_delete
-- Delete values of one scope and their index entries.
-- KEYS[1]: cacheidx:{<scope>}       sorted set, the scope's index
-- KEYS[2..]: cache:{<scope>}:<key>  the values to delete
-- returns: how many values existed
-- errors:  "INVALID ..." on bad arguments

if #KEYS < 2 then
  return redis.error_reply('INVALID cache_delete: expected the index and at least one key')
end
local deleted = 0
for i = 2, #KEYS do
  deleted = deleted + redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], KEYS[i])
end
return deleted
