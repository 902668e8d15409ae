-- function: queue_extend
-- Renew a lease: push its deadline to VISIBILITY ms from now (the worker's
-- heartbeat, while the handler runs). 0 tells the worker it lost the lease
-- (it expired and was taken back, or the job was released or purged): the
-- handler should stop; its ack would be refused anyway.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id of the job
-- ARGV[2]: job id
-- ARGV[3]: lease token
-- ARGV[4]: new lease length in ms from now, an integer >= 1
-- returns: 1 when renewed, 0 when the caller does not hold the lease
-- errors:  "INVALID ..." on bad arguments

local org_id, id, token, visibility_ms = ARGV[1], ARGV[2], ARGV[3], int_arg(ARGV[4], 1)
if #KEYS ~= 7 or not org_id or org_id == '' or not id or id == '' or not tonumber(token) then
  return redis.error_reply('INVALID queue_extend: expected the 7 queue keys, an org_id, a job id and a token')
end
if not visibility_ms then
  return redis.error_reply('INVALID queue_extend: visibility must be an integer >= 1 ms')
end
local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('HGET', job, 'lease') ~= token or not redis.call('ZSCORE', KEYS[3], member) then
  return 0
end
redis.call('ZADD', KEYS[3], 'XX', now_ms() + visibility_ms, member)
return 1
