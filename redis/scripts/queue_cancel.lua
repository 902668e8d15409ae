-- function: queue_cancel
-- Cancel a job of an org that is not running (ready, delayed or dead).
-- Another org's job with the same id is another job: the key carries the org.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id of the caller
-- ARGV[2]: job id
-- returns: 1 cancelled, 0 no such job for this org, -1 the job is running (claimed)
-- errors:  "INVALID ..." on bad arguments

local org_id, id = ARGV[1], ARGV[2]
if #KEYS ~= 7 or not org_id or org_id == '' or not id or id == '' then
  return redis.error_reply('INVALID queue_cancel: expected the 7 queue keys, an org_id and a job id')
end
local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('HGET', job, 'org_id') ~= org_id then
  return 0
end
if redis.call('ZSCORE', KEYS[3], member) then
  return -1
end
redis.call('LREM', KEYS[1], 1, member)
redis.call('ZREM', KEYS[4], member)
redis.call('LREM', KEYS[5], 1, member)
redis.call('DEL', job)
redis.call('HINCRBY', KEYS[6], 'cancelled', 1)
return 1
