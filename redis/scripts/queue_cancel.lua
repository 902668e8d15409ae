-- name: queue_cancel
-- version: 1
-- Cancel a job that is not running (ready, delayed or dead), on behalf of
-- its org only: another org's job id answers exactly like a missing one.
-- KEYS[1..6]: ready, processing, claims, delayed, dead, stats (see queue_enqueue)
-- ARGV[1]: job id
-- ARGV[2]: org_id of the caller
-- returns: 1 cancelled, 0 no such job for this org, -1 the job is running (claimed)
-- errors:  "INVALID ..." on bad arguments

local id, org_id = ARGV[1], ARGV[2]
if #KEYS ~= 6 or not id or id == '' or not org_id or org_id == '' then
  return redis.error_reply('INVALID queue_cancel: expected the 6 queue keys, a job id and an org_id')
end
local job = KEYS[1] .. ':job:' .. id
if redis.call('HGET', job, 'org_id') ~= org_id then
  return 0
end
if redis.call('ZSCORE', KEYS[3], id) then
  return -1
end
redis.call('LREM', KEYS[1], 1, id)
redis.call('ZREM', KEYS[4], id)
redis.call('LREM', KEYS[5], 1, id)
redis.call('DEL', job)
redis.call('HINCRBY', KEYS[6], 'cancelled', 1)
return 1
