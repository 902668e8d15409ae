-- function: queue_enqueue
-- Add a job of an org: its hash, then its member "<org_id>:<job_id>" on the
-- ready list (and a wake-up token for a blocked worker), or on the delayed
-- set when it should not run before a delay. Job ids are unique per org: a
-- member that already exists is not enqueued again (enqueue is idempotent per
-- org and job id), and another org's job with the same id is another job.
-- KEYS[1]: queue:{<job_type>}             list, ready members (pushed left, claimed right)
-- KEYS[2]: queue:{<job_type>}:processing  list, claimed members
-- KEYS[3]: queue:{<job_type>}:claims      sorted set, claimed member -> lease deadline ms
-- KEYS[4]: queue:{<job_type>}:delayed     sorted set, member -> not-before ms
-- KEYS[5]: queue:{<job_type>}:dead        list, dead-lettered members
-- KEYS[6]: queue:{<job_type>}:stats       hash, counters
-- KEYS[7]: queue:{<job_type>}:wake        list, wake-up tokens that idle workers block on (BLPOP)
-- job hash: KEYS[1] .. ':job:' .. member (same hash tag, same slot)
-- ARGV[1]: org_id the job belongs to
-- ARGV[2]: job id
-- ARGV[3]: payload, JSON
-- ARGV[4]: max attempts, an integer 1..1000
-- ARGV[5]: delay in ms, an integer >= 0
-- returns: 1 when enqueued, 0 when this org already has a job with this id
-- errors:  "INVALID ..." on bad arguments

local org_id, id, payload = ARGV[1], ARGV[2], ARGV[3]
local max_attempts, delay_ms = int_arg(ARGV[4], 1, 1000), int_arg(ARGV[5], 0)
if #KEYS ~= 7 then
  return redis.error_reply('INVALID queue_enqueue: expected the 7 queue keys')
end
if not org_id or org_id == '' or not id or id == '' or not payload or payload == '' then
  return redis.error_reply('INVALID queue_enqueue: org_id, job id and payload are required')
end
if not max_attempts or not delay_ms then
  return redis.error_reply('INVALID queue_enqueue: max attempts 1..1000, delay an integer >= 0 ms')
end

local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('EXISTS', job) == 1 then
  return 0
end
local now = now_ms()
redis.call('HSET', job, 'id', id, 'org_id', org_id, 'payload', payload,
  'attempts', 0, 'max_attempts', max_attempts, 'lease', 0, 'enqueued_at', now)
if delay_ms > 0 then
  redis.call('ZADD', KEYS[4], now + delay_ms, member)
else
  redis.call('LPUSH', KEYS[1], member)
  redis.call('LPUSH', KEYS[7], 1)
  redis.call('LTRIM', KEYS[7], 0, 63)
end
redis.call('HINCRBY', KEYS[6], 'enqueued', 1)
return 1
