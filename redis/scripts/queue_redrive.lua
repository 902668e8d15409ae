-- function: queue_redrive
-- Put a dead-lettered job of an org back on the ready list with fresh
-- attempts (after the cause was fixed). Its lease number keeps counting, so
-- no worker from before can ack it.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id of the caller
-- ARGV[2]: job id
-- returns: 1 requeued, 0 no such dead job for this org
-- errors:  "INVALID ..." on bad arguments

local org_id, id = ARGV[1], ARGV[2]
if #KEYS ~= 7 or not org_id or org_id == '' or not id or id == '' then
  return redis.error_reply('INVALID queue_redrive: expected the 7 queue keys, an org_id and a job id')
end
local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('HGET', job, 'org_id') ~= org_id then
  return 0
end
if redis.call('LREM', KEYS[5], 1, member) == 0 then
  return 0
end
redis.call('HSET', job, 'attempts', 0)
redis.call('HDEL', job, 'dead_at', 'claimed_at')
redis.call('LPUSH', KEYS[1], member)
redis.call('LPUSH', KEYS[7], 1)
redis.call('LTRIM', KEYS[7], 0, 63)
redis.call('HINCRBY', KEYS[6], 'redriven', 1)
return 1
