-- function: queue_purge_org
-- Delete every job of one org from one queue, whatever its state (ready,
-- delayed, running, dead): the tenant-deletion step for queues (admin only).
-- A worker still running one of these jobs loses its lease: its heartbeat,
-- ack and retry answer "lost".
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- ARGV[1]: org_id
-- returns: the number of jobs deleted
-- errors:  "INVALID ..." on bad arguments

local org_id = ARGV[1]
if #KEYS ~= 7 or not org_id or org_id == '' then
  return redis.error_reply('INVALID queue_purge_org: expected the 7 queue keys and an org_id')
end
local start = org_id .. ':'
local function mine(member)
  return string.sub(member, 1, #start) == start
end
local deleted = 0
local function drop(member)
  deleted = deleted + redis.call('DEL', KEYS[1] .. ':job:' .. member)
end
for _, list in ipairs({KEYS[1], KEYS[2], KEYS[5]}) do
  local members = redis.call('LRANGE', list, 0, -1)
  for i = 1, #members do
    if mine(members[i]) then
      redis.call('LREM', list, 0, members[i])
      drop(members[i])
    end
  end
end
for _, set in ipairs({KEYS[3], KEYS[4]}) do
  local members = redis.call('ZRANGE', set, 0, -1)
  for i = 1, #members do
    if mine(members[i]) then
      redis.call('ZREM', set, members[i])
      drop(members[i])
    end
  end
end
if deleted > 0 then
  redis.call('HINCRBY', KEYS[6], 'purged', deleted)
end
return deleted
