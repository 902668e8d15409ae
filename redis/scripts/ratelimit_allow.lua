-- function: ratelimit_allow
-- Sliding-window rate limit on a sorted set of admitted requests, one atomic
-- call: trim what left the window, count, admit or refuse, set the expiry.
-- Time is the server's (TIME), never the caller's, so clients with skewed
-- clocks share one window.
-- KEYS[1]: ratelimit:{org_id}:{dsp}  sorted set, member = "<time_us>:<request_id>",
--          score = admission time in microseconds
-- ARGV[1]: limit, an integer 1..1000000 (requests admitted per window)
-- ARGV[2]: window in milliseconds, an integer 1..2592000000 (30 days)
-- ARGV[3]: request id, 1..64 characters, unique per call (keeps members distinct)
-- returns: {allowed (1 or 0), remaining, retry_after_ms}
--          retry_after_ms is 0 when allowed, else the wait until one slot frees
-- errors:  "INVALID ..." on bad arguments; nothing is written then

local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local request_id = ARGV[3]
if #KEYS ~= 1 then
  return redis.error_reply('INVALID ratelimit_allow: expected 1 key')
end
if not limit or limit ~= math.floor(limit) or limit < 1 or limit > 1000000 then
  return redis.error_reply('INVALID ratelimit_allow: limit must be an integer in 1..1000000')
end
if not window_ms or window_ms ~= math.floor(window_ms) or window_ms < 1
    or window_ms > 2592000000 then
  return redis.error_reply('INVALID ratelimit_allow: window_ms must be an integer in 1..2592000000')
end
if not request_id or #request_id < 1 or #request_id > 64 then
  return redis.error_reply('INVALID ratelimit_allow: request id must be 1..64 characters')
end

local key = KEYS[1]
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window_us = window_ms * 1000

redis.call('ZREMRANGEBYSCORE', key, '-inf', now_us - window_us)
local count = redis.call('ZCARD', key)
if count < limit then
  local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('ZADD', key, stamp, stamp .. ':' .. request_id)
  redis.call('PEXPIRE', key, window_ms)
  return {1, limit - count - 1, 0}
end

-- Refused. After the (count - limit + 1) oldest entries leave the window
-- there is room again; the entry at index count - limit is the last of them.
-- (count can exceed limit when the limit was lowered.)
local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
local wait_us = tonumber(entry[2]) + window_us - now_us
local retry_ms = math.ceil(wait_us / 1000)
if retry_ms < 1 then
  retry_ms = 1
end
return {0, 0, retry_ms}
