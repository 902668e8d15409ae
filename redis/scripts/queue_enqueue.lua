-- name: queue_enqueue
-- version: 1
-- Add a job: its hash, then its id on the ready list, or on the delayed set
-- when it should not run before a delay. An id that already exists is not
-- enqueued again (enqueue is idempotent per job id).
-- KEYS[1]: queue:{job_type}             list, ready job ids (pushed left, claimed right)
-- KEYS[2]: queue:{job_type}:processing  list, claimed job ids
-- KEYS[3]: queue:{job_type}:claims      sorted set, claimed id -> visibility deadline ms
-- KEYS[4]: queue:{job_type}:delayed     sorted set, id -> not-before ms
-- KEYS[5]: queue:{job_type}:dead        list, dead-lettered ids
-- KEYS[6]: queue:{job_type}:stats       hash, counters
-- job hash: KEYS[1] .. ':job:' .. id (same hash tag, same slot)
-- ARGV[1]: job id
-- ARGV[2]: org_id the job belongs to
-- ARGV[3]: payload, JSON
-- ARGV[4]: max attempts, an integer 1..1000
-- ARGV[5]: delay in ms, an integer >= 0
-- returns: 1 when enqueued, 0 when a job with this id already exists
-- errors:  "INVALID ..." on bad arguments

local id, org_id, payload = ARGV[1], ARGV[2], ARGV[3]
local max_attempts, delay_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
if #KEYS ~= 6 then
  return redis.error_reply('INVALID queue_enqueue: expected the 6 queue keys')
end
if not id or id == '' or not org_id or org_id == '' or not payload or payload == '' then
  return redis.error_reply('INVALID queue_enqueue: job id, org_id and payload are required')
end
if not max_attempts or max_attempts ~= math.floor(max_attempts) or max_attempts < 1
    or max_attempts > 1000 then
  return redis.error_reply('INVALID queue_enqueue: max attempts must be an integer in 1..1000')
end
if not delay_ms or delay_ms ~= math.floor(delay_ms) or delay_ms < 0 then
  return redis.error_reply('INVALID queue_enqueue: delay must be an integer >= 0 ms')
end

local job = KEYS[1] .. ':job:' .. id
if redis.call('EXISTS', job) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', job, 'id', id, 'org_id', org_id, 'payload', payload,
  'attempts', 0, 'max_attempts', max_attempts, 'enqueued_at', now)
if delay_ms > 0 then
  redis.call('ZADD', KEYS[4], now + delay_ms, id)
else
  redis.call('LPUSH', KEYS[1], id)
end
redis.call('HINCRBY', KEYS[6], 'enqueued', 1)
return 1
