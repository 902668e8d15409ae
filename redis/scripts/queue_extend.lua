-- name: queue_extend
-- version: 1
-- Push a claim's visibility deadline out (a heartbeat for long jobs).
-- KEYS[1..6]: ready, processing, claims, delayed, dead, stats (see queue_enqueue)
-- ARGV[1]: job id
-- ARGV[2]: claim token
-- ARGV[3]: new visibility timeout in ms from now, an integer >= 1
-- returns: 1 when extended, 0 when the caller does not hold the claim
-- errors:  "INVALID ..." on bad arguments

local id, token, visibility_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
if #KEYS ~= 6 or not id or id == '' or not tonumber(token) then
  return redis.error_reply('INVALID queue_extend: expected the 6 queue keys, a job id and a token')
end
if not visibility_ms or visibility_ms < 1 or visibility_ms ~= math.floor(visibility_ms) then
  return redis.error_reply('INVALID queue_extend: visibility must be an integer >= 1 ms')
end
local job = KEYS[1] .. ':job:' .. id
if redis.call('HGET', job, 'attempts') ~= token or not redis.call('ZSCORE', KEYS[3], id) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], 'XX', now + visibility_ms, id)
return 1
