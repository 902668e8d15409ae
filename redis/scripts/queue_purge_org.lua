-- function: queue_purge_org
-- One bounded step of deleting one org's jobs from one queue (tenant
-- deletion, admin only): looks at no more than COUNT members of ONE of the
-- queue's structures, from CURSOR on, deletes the job hash of every member of
-- the org among them and takes the member out. The caller repeats it with the
-- returned cursor until it answers -1, for "delayed", "ready", "processing"
-- and "dead" in that order (platformdb.redis.tenant.purge_org_jobs does), so
-- no call runs longer than COUNT members, whatever the size of the org or the
-- queue, and other clients are served between the steps.
-- Why in that order, and why the job hash goes first: a member whose hash is
-- gone can no longer move except from "delayed" to "ready" (a due delayed
-- job), and queue_claim drops it. Lists are walked from the head (workers
-- take from the tail, producers push to the head: a push only makes the walk
-- look at a member twice), the delayed set from its highest score down (due
-- jobs leave from the lowest). Members are taken out of a list by marking
-- them with a tombstone (LSET) and one LREM of the tombstones per step.
-- A worker still running one of these jobs loses its lease: its heartbeat,
-- ack and retry answer "lost".
-- Admin only: KEYS[8] is a key no service user may touch (platformdb-queue
-- has ~queue:* and this is queueadmin:{<job_type>}), so FCALL refuses the
-- call for any other login before the function runs.
-- KEYS[1..7]: ready, processing, claims, delayed, dead, stats, wake (see queue_enqueue)
-- KEYS[8]: queueadmin:{<job_type>}  hash, counters of admin steps (same hash tag)
-- ARGV[1]: org_id
-- ARGV[2]: the structure: delayed, ready, processing or dead
-- ARGV[3]: cursor, an integer >= 0 (0 to start)
-- ARGV[4]: count, members to look at, an integer 1..5000
-- returns: {next cursor (-1: this structure is done), jobs deleted, members looked at}
-- errors:  "INVALID ..." on bad arguments

local org_id, what = ARGV[1], ARGV[2]
local cursor, count = int_arg(ARGV[3], 0), int_arg(ARGV[4], 1, 5000)
if #KEYS ~= 8 or not org_id or org_id == '' then
  return redis.error_reply('INVALID queue_purge_org: expected the 7 queue keys, queueadmin:{<job_type>}, an org_id, a structure, a cursor and a count (a step of a chunked purge)')
end
local brace = string.find(KEYS[1], '{', 1, true)
if not brace or brace < 7 or string.sub(KEYS[1], brace - 6, brace - 1) ~= 'queue:'
    or KEYS[8] ~= string.sub(KEYS[1], 1, brace - 7) .. 'queueadmin:' .. string.sub(KEYS[1], brace) then
  return redis.error_reply('INVALID queue_purge_org: KEYS[8] must be the queueadmin:{<job_type>} key of KEYS[1]')
end
if not cursor or not count then
  return redis.error_reply('INVALID queue_purge_org: cursor an integer >= 0, count 1..5000')
end

local start = org_id .. ':'
local function mine(member)
  return string.sub(member, 1, #start) == start
end
local removed, seen = 0, 0
local gone = {} -- the org's members met in this step (their job hashes go at the end)

if what == 'delayed' then
  local members = redis.call('ZRANGE', KEYS[4], cursor, cursor + count - 1, 'REV')
  seen = #members
  for i = 1, #members do
    if mine(members[i]) then
      gone[#gone + 1] = members[i]
    end
  end
  if #gone > 0 then
    redis.call('ZREM', KEYS[4], unpack(gone))
  end
elseif what == 'ready' or what == 'processing' or what == 'dead' then
  local list = KEYS[1]
  if what == 'processing' then
    list = KEYS[2]
  elseif what == 'dead' then
    list = KEYS[5]
  end
  -- no member is ever a tombstone: ids cannot hold a NUL byte
  local tombstone = '\0platformdb-purged'
  local members = redis.call('LRANGE', list, cursor, cursor + count - 1)
  seen = #members
  for i = 1, #members do
    if mine(members[i]) then
      redis.call('LSET', list, cursor + i - 1, tombstone)
      gone[#gone + 1] = members[i]
    end
  end
  if #gone > 0 then
    if what == 'processing' then
      redis.call('ZREM', KEYS[3], unpack(gone))
    end
    -- from the nearer end: the tombstones lie within [cursor, cursor + count)
    if cursor + seen > redis.call('LLEN', list) / 2 then
      redis.call('LREM', list, -#gone, tombstone)
    else
      redis.call('LREM', list, #gone, tombstone)
    end
  end
else
  return redis.error_reply('INVALID queue_purge_org: the structure is delayed, ready, processing or dead')
end

removed = #gone
local deleted = 0
if removed > 0 then
  local jobs = {}
  for i = 1, removed do
    jobs[i] = KEYS[1] .. ':job:' .. gone[i]
  end
  deleted = redis.call('DEL', unpack(jobs))
end

redis.call('HINCRBY', KEYS[8], 'purge_steps', 1)
if deleted > 0 then
  redis.call('HINCRBY', KEYS[6], 'purged', deleted)
end
local next_cursor = cursor + seen - removed
if seen < count then
  next_cursor = -1
end
return {next_cursor, deleted, seen}
