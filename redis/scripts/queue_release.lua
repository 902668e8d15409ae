-- function: queue_release
-- Hand a claimed job back without counting a failure (a worker shutting
-- down whose job did not finish within its grace period): the job goes to
-- the head of the ready list, its attempt is not counted, and its lease
-- number moves on, so the releasing worker can no longer ack or retry it.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id of the job
-- ARGV[2]: job id
-- ARGV[3]: lease token
-- returns: 1 when released, 0 when the caller does not hold the lease
-- errors:  "INVALID ..." on bad arguments

local org_id, id, token = ARGV[1], ARGV[2], ARGV[3]
if #KEYS ~= 7 or not org_id or org_id == '' or not id or id == '' or not tonumber(token) then
  return redis.error_reply('INVALID queue_release: expected the 7 queue keys, an org_id, a job id and a token')
end
local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('HGET', job, 'lease') ~= token or not redis.call('ZSCORE', KEYS[3], member) then
  return 0
end
redis.call('LREM', KEYS[2], 1, member)
redis.call('ZREM', KEYS[3], member)
redis.call('HINCRBY', job, 'attempts', -1)
redis.call('HINCRBY', job, 'lease', 1)
redis.call('RPUSH', KEYS[1], member)
redis.call('LPUSH', KEYS[7], 1)
redis.call('LTRIM', KEYS[7], 0, 63)
redis.call('HINCRBY', KEYS[6], 'released', 1)
return 1
