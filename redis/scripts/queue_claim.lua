-- name: queue_claim
-- version: 1
-- Claim up to N ready jobs into the processing list with a visibility
-- deadline. First, in the same call: claims whose deadline passed (a worker
-- died or hung) are taken back and retried with backoff or dead-lettered,
-- and delayed jobs that are due move to the ready list. With N = 0 this is
-- the "requeue expired claims" maintenance call.
-- Each claim increments the job's attempts; that number is the claim token:
-- ack, retry and extend must present it, so a worker whose claim expired and
-- was handed to another worker can no longer ack (never acked twice).
-- KEYS[1..6]: ready, processing, claims, delayed, dead, stats (see queue_enqueue)
-- ARGV[1]: N, jobs to claim, an integer 0..1000
-- ARGV[2]: visibility timeout in ms, an integer >= 1
-- ARGV[3]: backoff base in ms, an integer >= 0 (retry n waits base * 2^(n-1))
-- ARGV[4]: backoff cap in ms, an integer >= 0
-- ARGV[5]: at most this many expired claims are handled per call, an integer >= 0
-- returns: {requeued, dead_lettered, then per job: id, token, org_id, payload,
--          max_attempts, enqueued_at_ms}
-- errors:  "INVALID ..." on bad arguments

local function int_arg(value, min, max)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < min or (max and n > max) then
    return nil
  end
  return n
end
local count = int_arg(ARGV[1], 0, 1000)
local visibility_ms = int_arg(ARGV[2], 1)
local backoff_base = int_arg(ARGV[3], 0)
local backoff_cap = int_arg(ARGV[4], 0)
local reap_limit = int_arg(ARGV[5], 0, 100000)
if #KEYS ~= 6 then
  return redis.error_reply('INVALID queue_claim: expected the 6 queue keys')
end
if not count or not visibility_ms or not backoff_base or not backoff_cap or not reap_limit then
  return redis.error_reply('INVALID queue_claim: count 0..1000, visibility >= 1, backoff >= 0, reap limit >= 0')
end

local ready, processing, claims, delayed, dead, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- 1. Claims whose worker missed the deadline: retry with backoff or dead-letter.
local requeued, dead_lettered = 0, 0
if reap_limit > 0 then
  local expired = redis.call('ZRANGEBYSCORE', claims, '-inf', now, 'LIMIT', 0, reap_limit)
  for i = 1, #expired do
    local id = expired[i]
    local job = KEYS[1] .. ':job:' .. id
    redis.call('LREM', processing, 1, id)
    redis.call('ZREM', claims, id)
    local state = redis.call('HMGET', job, 'attempts', 'max_attempts')
    local attempts, max_attempts = tonumber(state[1]), tonumber(state[2])
    if attempts and max_attempts then
      if attempts >= max_attempts then
        redis.call('RPUSH', dead, id)
        redis.call('HSET', job, 'last_error', 'visibility timeout expired', 'dead_at', now)
        redis.call('HINCRBY', stats, 'dead', 1)
        dead_lettered = dead_lettered + 1
      else
        local delay = math.min(backoff_base * 2 ^ (attempts - 1), backoff_cap)
        redis.call('HSET', job, 'last_error', 'visibility timeout expired')
        if delay >= 1 then
          redis.call('ZADD', delayed, now + math.floor(delay), id)
        else
          redis.call('LPUSH', ready, id)
        end
        redis.call('HINCRBY', stats, 'requeued', 1)
        requeued = requeued + 1
      end
    end
  end
end

-- 2. Delayed jobs that are due join the ready list, oldest first.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #due do
  redis.call('ZREM', delayed, due[i])
  redis.call('LPUSH', ready, due[i])
end

-- 3. Claim.
local out = {requeued, dead_lettered}
local claimed = 0
while claimed < count do
  local id = redis.call('LMOVE', ready, processing, 'RIGHT', 'LEFT')
  if not id then
    break
  end
  local job = KEYS[1] .. ':job:' .. id
  if redis.call('EXISTS', job) == 0 then
    -- a job hash that vanished (cancelled by hand): nothing to run
    redis.call('LREM', processing, 1, id)
  else
    local token = redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('HSET', job, 'claimed_at', now)
    redis.call('ZADD', claims, now + visibility_ms, id)
    local fields = redis.call('HMGET', job, 'org_id', 'payload', 'max_attempts', 'enqueued_at')
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = fields[1]
    out[#out + 1] = fields[2]
    out[#out + 1] = fields[3]
    out[#out + 1] = fields[4]
    claimed = claimed + 1
  end
end
return out
