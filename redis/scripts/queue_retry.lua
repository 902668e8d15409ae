-- name: queue_retry
-- version: 1
-- Give back a claimed job that failed: retry it after a backoff delay, or
-- dead-letter it once it has used its attempts.
-- KEYS[1..6]: ready, processing, claims, delayed, dead, stats (see queue_enqueue)
-- ARGV[1]: job id
-- ARGV[2]: claim token (the attempt number returned by queue_claim)
-- ARGV[3]: error text to keep on the job (at most 4096 bytes kept)
-- ARGV[4]: backoff base in ms, an integer >= 0 (retry n waits base * 2^(n-1))
-- ARGV[5]: backoff cap in ms, an integer >= 0
-- ARGV[6]: explicit delay in ms, an integer >= 0, or -1 to use the backoff
-- returns: {state, delay_ms}: state 1 retried, 2 dead-lettered, 0 the caller
--          does not hold the claim (nothing changed)
-- errors:  "INVALID ..." on bad arguments

local id, token, err = ARGV[1], ARGV[2], ARGV[3]
local base, cap, explicit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if #KEYS ~= 6 or not id or id == '' or not tonumber(token) or err == nil then
  return redis.error_reply('INVALID queue_retry: expected the 6 queue keys, a job id, a token and an error')
end
if not base or base < 0 or not cap or cap < 0 or not explicit or explicit < -1
    or base ~= math.floor(base) or cap ~= math.floor(cap) or explicit ~= math.floor(explicit) then
  return redis.error_reply('INVALID queue_retry: backoff and delay must be integers >= 0')
end
local job = KEYS[1] .. ':job:' .. id
if redis.call('HGET', job, 'attempts') ~= token or not redis.call('ZSCORE', KEYS[3], id) then
  return {0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('HSET', job, 'last_error', string.sub(err, 1, 4096))

local attempts = tonumber(token)
local max_attempts = tonumber(redis.call('HGET', job, 'max_attempts')) or 1
if attempts >= max_attempts then
  redis.call('RPUSH', KEYS[5], id)
  redis.call('HSET', job, 'dead_at', now)
  redis.call('HINCRBY', KEYS[6], 'dead', 1)
  return {2, 0}
end
local delay = explicit
if delay < 0 then
  delay = math.floor(math.min(base * 2 ^ (attempts - 1), cap))
end
if delay >= 1 then
  redis.call('ZADD', KEYS[4], now + delay, id)
else
  redis.call('LPUSH', KEYS[1], id)
end
redis.call('HINCRBY', KEYS[6], 'retried', 1)
return {1, delay}
