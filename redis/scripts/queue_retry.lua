-- function: queue_retry
-- Give back a claimed job that failed: retry it after a backoff delay, or
-- dead-letter it once it has used its attempts. Only the current lease's
-- holder can: a worker whose lease expired gets 0 and changes nothing.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id of the job
-- ARGV[2]: job id
-- ARGV[3]: lease token
-- ARGV[4]: error text to keep on the job (at most 4096 bytes kept)
-- ARGV[5]: backoff base in ms, an integer >= 0 (retry n waits base * 2^(n-1))
-- ARGV[6]: backoff cap in ms, an integer >= 0
-- ARGV[7]: explicit delay in ms, an integer >= 0, or -1 to use the backoff
-- ARGV[8]: (optional) 1 to dead-letter the job now, whatever its attempts (a
--          payload no worker can read: retrying cannot help), else 0
-- returns: {state, delay_ms}: state 1 retried, 2 dead-lettered, 0 the caller
--          does not hold the lease (nothing changed)
-- errors:  "INVALID ..." on bad arguments

local org_id, id, token, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local base, cap, explicit = int_arg(ARGV[5], 0), int_arg(ARGV[6], 0), int_arg(ARGV[7], -1)
if #KEYS ~= 7 or not org_id or org_id == '' or not id or id == '' or not tonumber(token)
    or err == nil then
  return redis.error_reply('INVALID queue_retry: expected the 7 queue keys, an org_id, a job id, a token and an error')
end
if not base or not cap or not explicit then
  return redis.error_reply('INVALID queue_retry: backoff and delay must be integers >= 0')
end
local member = org_id .. ':' .. id
local job = KEYS[1] .. ':job:' .. member
if redis.call('HGET', job, 'lease') ~= token or not redis.call('ZSCORE', KEYS[3], member) then
  return {0, 0}
end
local now = now_ms()
redis.call('LREM', KEYS[2], 1, member)
redis.call('ZREM', KEYS[3], member)
redis.call('HSET', job, 'last_error', string.sub(err, 1, 4096))

local state = redis.call('HMGET', job, 'attempts', 'max_attempts')
local attempts = tonumber(state[1]) or 1
local max_attempts = tonumber(state[2]) or 1
if attempts >= max_attempts or ARGV[8] == '1' then
  redis.call('RPUSH', KEYS[5], member)
  redis.call('HSET', job, 'dead_at', now)
  redis.call('HINCRBY', KEYS[6], 'dead', 1)
  return {2, 0}
end
local delay = explicit
if delay < 0 then
  delay = math.floor(math.min(base * 2 ^ (attempts - 1), cap))
end
if delay >= 1 then
  redis.call('ZADD', KEYS[4], now + delay, member)
else
  redis.call('LPUSH', KEYS[1], member)
  redis.call('LPUSH', KEYS[7], 1)
  redis.call('LTRIM', KEYS[7], 0, 63)
end
redis.call('HINCRBY', KEYS[6], 'retried', 1)
return {1, delay}
