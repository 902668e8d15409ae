-- name: queue_redrive
-- version: 1
-- Put a dead-lettered job back on the ready list with fresh attempts (after
-- the cause was fixed), on behalf of its org.
-- KEYS[1..6]: ready, processing, claims, delayed, dead, stats (see queue_enqueue)
-- ARGV[1]: job id
-- ARGV[2]: org_id of the caller
-- returns: 1 requeued, 0 no such dead job for this org
-- errors:  "INVALID ..." on bad arguments

local id, org_id = ARGV[1], ARGV[2]
if #KEYS ~= 6 or not id or id == '' or not org_id or org_id == '' then
  return redis.error_reply('INVALID queue_redrive: expected the 6 queue keys, a job id and an org_id')
end
local job = KEYS[1] .. ':job:' .. id
if redis.call('HGET', job, 'org_id') ~= org_id then
  return 0
end
if redis.call('LREM', KEYS[5], 1, id) == 0 then
  return 0
end
redis.call('HSET', job, 'attempts', 0)
redis.call('HDEL', job, 'dead_at', 'claimed_at')
redis.call('LPUSH', KEYS[1], id)
redis.call('HINCRBY', KEYS[6], 'redriven', 1)
return 1
