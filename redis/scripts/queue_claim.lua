-- function: queue_claim
-- Claim up to N ready jobs into the processing list, each with a lease: a
-- deadline VISIBILITY ms from now, which the worker's heartbeat extends while
-- the handler runs. First, in the same call: leases whose deadline passed (a
-- worker died or hung) are taken back and retried with backoff or
-- dead-lettered, and delayed jobs that are due move to the ready list. With
-- N = 0 this is the "requeue expired leases" maintenance call.
-- A job's clock starts when it is claimed: time spent delayed (a delay, a
-- backoff) never counts against its lease.
-- Each claim increments the job's attempts and its lease number; the lease
-- number is the fencing token: ack, retry, extend and release must present
-- it, so a worker whose lease expired can no longer ack or retry the job,
-- even after it was redriven and its attempts started over.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: N, jobs to claim, an integer 0..1000
-- ARGV[2]: visibility timeout (lease length) in ms, an integer >= 1
-- ARGV[3]: backoff base in ms, an integer >= 0 (retry n waits base * 2^(n-1))
-- ARGV[4]: backoff cap in ms, an integer >= 0
-- ARGV[5]: at most this many expired leases are handled per call, an integer >= 0
-- ARGV[6]: (optional) the largest payload in bytes a worker accepts, an integer >= 1:
--          a job with a larger payload is dead-lettered here ("payload is N bytes,
--          over the limit of M"), never handed to a worker (and not counted in N)
-- returns: {requeued, dead_lettered, wait_ms, then per job: org_id, job id, lease,
--          attempt, payload, max_attempts, enqueued_at_ms}
--          wait_ms: ms until the next delayed job is due or lease expires
--          (-1 when none), how long an idle worker may block
-- errors:  "INVALID ..." on bad arguments

local count = int_arg(ARGV[1], 0, 1000)
local visibility_ms = int_arg(ARGV[2], 1)
local backoff_base = int_arg(ARGV[3], 0)
local backoff_cap = int_arg(ARGV[4], 0)
local reap_limit = int_arg(ARGV[5], 0, 100000)
local max_payload = nil
if ARGV[6] ~= nil then
  max_payload = int_arg(ARGV[6], 1)
  if not max_payload then
    return redis.error_reply('INVALID queue_claim: the payload limit must be an integer >= 1')
  end
end
if #KEYS ~= 7 then
  return redis.error_reply('INVALID queue_claim: expected the 7 queue keys')
end
if not count or not visibility_ms or not backoff_base or not backoff_cap or not reap_limit then
  return redis.error_reply('INVALID queue_claim: count 0..1000, visibility >= 1, backoff >= 0, reap limit >= 0')
end

local ready, processing, claims, delayed, dead, stats, wake =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = now_ms()

-- 1. Leases whose worker missed the deadline: retry with backoff or dead-letter.
local requeued, dead_lettered = 0, 0
if reap_limit > 0 then
  local expired = redis.call('ZRANGEBYSCORE', claims, '-inf', now, 'LIMIT', 0, reap_limit)
  for i = 1, #expired do
    local member = expired[i]
    local job = KEYS[1] .. ':job:' .. member
    redis.call('LREM', processing, 1, member)
    redis.call('ZREM', claims, member)
    local state = redis.call('HMGET', job, 'attempts', 'max_attempts')
    local attempts, max_attempts = tonumber(state[1]), tonumber(state[2])
    if attempts and max_attempts then
      if attempts >= max_attempts then
        redis.call('RPUSH', dead, member)
        redis.call('HSET', job, 'last_error', 'lease expired', 'dead_at', now)
        redis.call('HINCRBY', stats, 'dead', 1)
        dead_lettered = dead_lettered + 1
      else
        local delay = math.min(backoff_base * 2 ^ (attempts - 1), backoff_cap)
        redis.call('HSET', job, 'last_error', 'lease expired')
        if delay >= 1 then
          redis.call('ZADD', delayed, now + math.floor(delay), member)
        else
          redis.call('LPUSH', ready, member)
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
local out = {requeued, dead_lettered, -1}
local claimed = 0
local moved = 0 -- bounded: members of purged or dead-lettered jobs do not count as claims
while claimed < count and moved < count + 1000 do
  moved = moved + 1
  local member = redis.call('LMOVE', ready, processing, 'RIGHT', 'LEFT')
  if not member then
    break
  end
  local job = KEYS[1] .. ':job:' .. member
  local size = redis.call('HSTRLEN', job, 'payload')
  local fields = {false}
  if not max_payload or size <= max_payload then
    fields = redis.call('HMGET', job, 'org_id', 'id', 'payload', 'max_attempts', 'enqueued_at')
  elseif redis.call('EXISTS', job) == 1 then
    redis.call('LREM', processing, 1, member)
    redis.call('RPUSH', dead, member)
    redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('HSET', job, 'last_error', 'payload is ' .. size .. ' bytes, over the limit of '
      .. max_payload, 'dead_at', now)
    redis.call('HINCRBY', stats, 'dead', 1)
    dead_lettered = dead_lettered + 1
    fields = nil
  end
  if not fields then
    -- dead-lettered above
  elseif not fields[1] then
    -- the job hash is gone (its org was purged): nothing to run
    redis.call('LREM', processing, 1, member)
  else
    local attempt = redis.call('HINCRBY', job, 'attempts', 1)
    local lease = redis.call('HINCRBY', job, 'lease', 1)
    redis.call('HSET', job, 'claimed_at', now)
    redis.call('ZADD', claims, now + visibility_ms, member)
    out[#out + 1] = fields[1]
    out[#out + 1] = fields[2]
    out[#out + 1] = lease
    out[#out + 1] = attempt
    out[#out + 1] = fields[3]
    out[#out + 1] = fields[4]
    out[#out + 1] = fields[5]
    claimed = claimed + 1
  end
end

-- 4. When nothing was claimed: how long until something can be (0: the step
-- limit above stopped this call while jobs are still ready).
if claimed == 0 and count > 0 and redis.call('LLEN', ready) > 0 then
  out[3] = 0
elseif claimed == 0 and redis.call('LLEN', ready) == 0 then
  local next_at = nil
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if first[2] then
    next_at = tonumber(first[2])
  end
  first = redis.call('ZRANGE', claims, 0, 0, 'WITHSCORES')
  if first[2] and (not next_at or tonumber(first[2]) < next_at) then
    next_at = tonumber(first[2])
  end
  if next_at then
    out[3] = math.max(next_at - now, 0)
  end
end
return out
