-- function: queue_ack
-- Acknowledge a finished job: end its lease and delete it. Only the current
-- lease's holder can ack, and only once: a second ack, or an ack with the
-- token of a lease that expired (the job was requeued, maybe claimed again),
-- returns 0 and changes nothing.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id of the job
-- ARGV[2]: job id
-- ARGV[3]: lease token (the lease number returned by queue_claim)
-- returns: 1 when acked, 0 when the caller does not hold the lease
-- errors:  "INVALID ..." on bad arguments

local org_id, id, token = ARGV[1], ARGV[2], ARGV[3]
if #KEYS ~= 7 or not org_id or org_id == '' or not id or id == '' or not tonumber(token) then
  return redis.error_reply('INVALID queue_ack: expected the 7 queue keys, an org_id, a job id and a token')
end
local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('HGET', job, 'lease') ~= token or not redis.call('ZSCORE', KEYS[3], member) then
  return 0
end
redis.call('LREM', KEYS[2], 1, member)
redis.call('ZREM', KEYS[3], member)
redis.call('DEL', job)
redis.call('HINCRBY', KEYS[6], 'acked', 1)
return 1
