-- name: queue_ack
-- version: 1
-- Acknowledge a finished job: remove its claim and delete it. Only the
-- current claim's holder can ack, and only once: a second ack, or an ack
-- with the token of a claim that expired and was requeued, returns 0.
-- KEYS[1..6]: ready, processing, claims, delayed, dead, stats (see queue_enqueue)
-- ARGV[1]: job id
-- ARGV[2]: claim token (the attempt number returned by queue_claim)
-- returns: 1 when acked, 0 when the caller does not hold the claim
-- errors:  "INVALID ..." on bad arguments

local id, token = ARGV[1], ARGV[2]
if #KEYS ~= 6 or not id or id == '' or not tonumber(token) then
  return redis.error_reply('INVALID queue_ack: expected the 6 queue keys, a job id and a token')
end
local job = KEYS[1] .. ':job:' .. id
if redis.call('HGET', job, 'attempts') ~= token or not redis.call('ZSCORE', KEYS[3], id) then
  return 0
end
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('DEL', job)
redis.call('HINCRBY', KEYS[6], 'acked', 1)
return 1
