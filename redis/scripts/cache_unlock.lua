-- function: cache_unlock
-- Release the recompute lock, only when the caller still holds it (a lock
-- that expired and was taken by another caller stays theirs).
-- KEYS[1]: cachelock:{<scope>}:<key>  string, the lock
-- ARGV[1]: the caller's lock token
-- returns: 1 when released, 0 when the caller did not hold it

if #KEYS ~= 1 or not ARGV[1] or ARGV[1] == '' then
  return redis.error_reply('INVALID cache_unlock: expected 1 key and a token')
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
