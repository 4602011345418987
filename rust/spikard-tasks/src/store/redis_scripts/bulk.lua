-- A bulk operation on the jobs matching a filter: 'retry' (failed or cancelled back to
-- pending), 'cancel' (unstarted ones cancelled, running ones asked to stop) or 'purge'
-- (finished before `before`, deleted from every index). Acts on at most `limit` jobs
-- and examines at most `budget` index entries, walking its sources in order from
-- (resume key, skip): the jobs it acts on leave the source (or, asked to stop, no longer
-- match), so `skip` counts the entries passed over.
-- Sources: per queue (the filter's, or every known one, by name) the finished-by-time
-- sets of the states concerned (retry, purge), or the ready, scheduled and retry sets
-- and then `running` (cancel).
-- ARGV: prefix, op, now, limit, budget, filter (5 arguments, see read_filter), before
-- (purge; '' otherwise), resume key ('' for the first source), skip, then the filter's
-- job ids if any (see read_ids: those jobs are looked up directly, no source walked).
-- Returns { acted on, done (1 when every source was walked to its end), next source
-- key, skip }.
local op, now_s = ARGV[2], ARGV[3]
local now = tonumber(now_s)
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local f = read_filter(6)
read_ids(f, 14)
local before = tonumber(ARGV[11])
local resume_key, skip = ARGV[12], tonumber(ARGV[13])
local CHUNK = 256

local queues
if f.queue then
  queues = { f.queue }
else
  queues = redis.call('SMEMBERS', QUEUES)
  table.sort(queues, byte_before)
end
local function wants(...)
  if f.any then return true end
  for i = 1, select('#', ...) do
    if f.want[select(i, ...)] then return true end
  end
  return false
end
local sources = {}
local function add(key, lex) sources[#sources + 1] = { key = key, lex = lex } end
if op == 'cancel' then
  for _, q in ipairs(queues) do
    if wants('pending', 'retrying') then add(qkey(q, 'ready'), true) end
    if wants('pending', 'scheduled') then add(qkey(q, 'scheduled')) end
    if wants('retrying') then add(qkey(q, 'retry')) end
  end
  if wants('running') then add(RUNNING) end
else
  local states = op == 'retry' and { 'failed', 'cancelled' } or { 'succeeded', 'failed', 'cancelled' }
  for _, q in ipairs(queues) do
    for _, st in ipairs(states) do
      if wants(st) then add(fkey(q, st)) end
    end
  end
end
local si = 1
if resume_key ~= '' then
  si = nil
  for i, s in ipairs(sources) do
    if s.key == resume_key then
      si = i
      break
    end
  end
  -- The source list changed under us: start over (only repeats work).
  if not si then si, skip = 1, 0 end
end

local FIELDS = { 'status', 'queue', 'task', 'run_at', 'enqueued_at', 'priority', 'unique_key',
  'finished_at', 'cancel_requested' }
local woken = {}

-- Whether an unfinished job other than `id` holds `key` in `queue`.
local function held(queue, key, id)
  local holder = redis.call('HGET', qkey(queue, 'unique'), key)
  if not holder or holder == id then return false end
  local st = redis.call('HGET', jkey(holder), 'status')
  return st == 'pending' or st == 'running' or st == 'retrying'
end

local function retry(k, id, h)
  local status, queue, key = h[1], h[2], h[7]
  if status ~= 'failed' and status ~= 'cancelled' then return false end
  if key then
    if held(queue, key, id) then return false end
    redis.call('HSET', qkey(queue, 'unique'), key, id)
  end
  redis.call('HSET', k, 'status', 'pending', 'attempts', '0', 'run_at', now_s)
  redis.call('HDEL', k, 'result', 'finished_at', 'started_at', 'cancel_reason',
    'cancel_requested', 'locked_by', 'lease_until')
  unfinish(queue, status, id)
  count(queue, status, -1)
  count(queue, 'pending', 1)
  make_ready(queue, h[6], now_s, id)
  woken[queue] = true
  return true
end

local function purge(k, id, h)
  local status, queue = h[1], h[2]
  local finished_at = tonumber(h[8])
  if not is_finished(status) or not finished_at or finished_at >= before then return false end
  redis.call('DEL', k)
  unfinish(queue, status, id)
  unindex_job(queue, id)
  count(queue, status, -1)
  return true
end

local function cancel(k, id, h, src, m)
  local status, queue = h[1], h[2]
  if status == 'pending' or status == 'retrying' then
    redis.call('HSET', k, 'status', 'cancelled', 'finished_at', now_s,
      'cancel_reason', 'cancelled by request')
    defer('ZREM', qkey(queue, 'ready'), member(h[6], h[4], id))
    if src.lex then defer('ZREM', src.key, m) end
    defer('ZREM', qkey(queue, 'scheduled'), id)
    defer('ZREM', qkey(queue, 'retry'), id)
    count(queue, status, -1)
    count(queue, 'cancelled', 1)
    finish(queue, id, h[7], now_s, 'cancelled', h[5])
    return true
  end
  if status == 'running' and h[9] ~= '1' then
    redis.call('HSET', k, 'cancel_requested', '1')
    return true
  end
  return false
end

local touched, examined = 0, 0
if f.ids then
  -- Named jobs: each looked up once, whatever index holds it; one call does them all.
  for _, id in ipairs(f.id_list) do
    if touched >= limit then break end
    local k = jkey(id)
    local h = redis.call('HMGET', k, unpack(FIELDS))
    if matches(f, h, now, id) then
      local acted
      if op == 'retry' then
        acted = retry(k, id, h)
      elseif op == 'purge' then
        acted = before ~= nil and purge(k, id, h)
      else
        acted = cancel(k, id, h, { lex = false }, nil)
      end
      if acted then touched = touched + 1 end
    end
  end
  flush()
  for queue in pairs(woken) do wake(queue) end
  return { touched, 1, '', 0 }
end
while si <= #sources and touched < limit and examined < budget do
  local src = sources[si]
  local items = redis.call('ZRANGE', src.key, skip, skip + CHUNK - 1, 'WITHSCORES')
  local ended = #items < 2 * CHUNK
  for j = 1, #items, 2 do
    local m = items[j]
    if op == 'purge' and tonumber(items[j + 1]) >= before then
      ended = true
      break
    end
    examined = examined + 1
    local id = src.lex and string.sub(m, MEMBER_PREFIX + 1) or m
    local k = jkey(id)
    local h = redis.call('HMGET', k, unpack(FIELDS))
    local acted = false
    if matches(f, h, now, id) then
      if op == 'retry' then
        acted = retry(k, id, h)
      elseif op == 'purge' then
        acted = purge(k, id, h)
      else
        acted = cancel(k, id, h, src, m)
      end
    end
    if acted then touched = touched + 1 else skip = skip + 1 end
    if touched >= limit or examined >= budget then
      ended = false
      break
    end
  end
  -- The next read of this source must no longer see the entries acted on.
  flush()
  if ended then
    si = si + 1
    skip = 0
  end
end
for queue in pairs(woken) do wake(queue) end
local done = si > #sources
return { touched, done and 1 or 0, done and '' or sources[si].key, skip }
