-- Claims up to `limit` ready jobs of the given queues for a worker, obeying flow control:
-- the stored limits named (a key no longer stored is ignored) and the worker's room per
-- queue. Like claim.lua it first moves due scheduled and retrying jobs to the ready sets,
-- then walks the ready sets merged in claim order, skipping (and leaving ready) each job
-- a limit or the queue's room holds back, claiming the others as claim.lua does. At most
-- `budget` ready members are examined: jobs behind them wait for a later claim.
-- ARGV: prefix, now, lease_until, worker, limit, promote_cap, budget, n, n limit keys,
-- m, m pairs (queue, room), queues...
-- Returns { jobs, retry_at }: jobs as claim.lua returns them, in claim order; retry_at
-- (ms, or nil) the earliest next start of a rate that had no token while fewer than
-- `limit` jobs were claimed.
local now, lease_until, worker = ARGV[2], ARGV[3], ARGV[4]
local limit, cap, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now_us = tonumber(now) * 1000
-- Members of a limit's set checked per claim when it has no cap (see limit_keys.lua).
local PRUNE_SAMPLE = 8
-- Ready members read at once from one queue.
local PAGE = 100

-- The limits as stored now, by key, task and queue; `allow` is how many jobs each still
-- allows (its cap minus its running jobs; a rate: 1 with a token, else 0).
local a = 8
local limits, by_task, by_queue, seen = {}, {}, {}, {}
for _ = 1, tonumber(ARGV[a]) do
  a = a + 1
  local key = ARGV[a]
  if not seen[key] then
    seen[key] = true
    local f = redis.call('HMGET', lkey(key), 'scope', 'name', 'rate_count', 'rate_period_ms',
      'max_running', 'next_start_us')
    if f[1] == 'task' or f[1] == 'queue' then
      local l = { key = key, allow = math.huge, taken = 0 }
      local max_running = tonumber(f[5])
      if max_running then
        l.allow = math.max(0, max_running - running_under(key))
      else
        prune_some(key, PRUNE_SAMPLE)
      end
      local count, period = tonumber(f[3]), tonumber(f[4])
      if count and period then
        count, period = math.max(1, count), math.max(1, period)
        -- The spacing of two starts in µs, rounded up (Rate::interval_us).
        l.interval = math.floor((period * 1000 + count - 1) / count)
        l.next_us = tonumber(f[6]) or 0
        if now_us >= l.next_us then l.allow = math.min(l.allow, 1) else l.allow = 0 end
      end
      if f[1] == 'task' then by_task[f[2]] = l else by_queue[f[2]] = l end
      limits[#limits + 1] = l
    end
  end
end
a = a + 1
-- The worker's room per queue (the first entry of a queue counts).
local room = {}
for _ = 1, tonumber(ARGV[a]) do
  if room[ARGV[a + 1]] == nil then room[ARGV[a + 1]] = tonumber(ARGV[a + 2]) end
  a = a + 2
end
local queues, named = {}, {}
for i = a + 1, #ARGV do
  if not named[ARGV[i]] then
    named[ARGV[i]] = true
    queues[#queues + 1] = ARGV[i]
  end
end

-- Scheduled and retrying jobs whose run_at has come join the ready set.
promote_due(queues, now, cap)

-- Whether a queue may still give jobs: its limit and the worker's room for it allow one.
local function open(queue)
  local l = by_queue[queue]
  return (l == nil or l.allow > 0) and (room[queue] == nil or room[queue] > 0)
end

-- One cursor per queue over its ready set (read a page at a time, after the last member
-- read); the walk takes the smallest head among them.
local streams = {}
for _, queue in ipairs(queues) do
  if open(queue) then
    streams[#streams + 1] = { queue = queue, buf = {}, pos = 1, last = nil, done = false }
  end
end

local function head(s)
  if s.done then return nil end
  if s.pos > #s.buf then
    local from = s.last and ('(' .. s.last) or '-'
    s.buf = redis.call('ZRANGE', qkey(s.queue, 'ready'), from, '+', 'BYLEX', 'LIMIT', 0, PAGE)
    s.pos = 1
    if #s.buf == 0 then
      s.done = true
      return nil
    end
  end
  return s.buf[s.pos]
end

-- A job starts under limit `l` (if any): one less allowed, one more in its running set.
local function take(l, id)
  if l then
    l.allow = l.allow - 1
    l.taken = l.taken + 1
    defer('SADD', lrun(l.key), id)
  end
end

local claimed = {}
local examined = 0
while #claimed < limit and examined < budget do
  local best, best_m = nil, nil
  for _, s in ipairs(streams) do
    local m = head(s)
    if m and (best_m == nil or byte_before(m, best_m)) then best, best_m = s, m end
  end
  if not best then break end
  best.pos = best.pos + 1
  best.last = best_m
  examined = examined + 1
  local queue = best.queue
  local id = string.sub(best_m, MEMBER_PREFIX + 1)
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'task')
  if h[1] == 'pending' or h[1] == 'retrying' then
    local tl, ql = by_task[h[2]], by_queue[queue]
    if (tl == nil or tl.allow > 0) and open(queue) then
      local f = redis.call('HMGET', k, 'attempts', 'queue', 'task', 'args', 'kwargs',
        'max_attempts', 'timeout_ms', 'priority', 'enqueued_at', 'trace_context', 'run_at')
      local attempts = claim_job(k, id, best_m, queue, h[1], f[1], worker, lease_until)
      take(tl, id)
      take(ql, id)
      if room[queue] then room[queue] = room[queue] - 1 end
      if not open(queue) then best.done = true end
      claimed[#claimed + 1] = { id, f[2], f[3], f[4], f[5], attempts, f[6], f[7], f[8], f[9],
        f[10], f[11] }
    end
  else
    -- Stale: the job is gone or no longer waiting.
    defer('ZREM', qkey(queue, 'ready'), best_m)
  end
end

-- Each rate's next start moves on by the jobs it let start.
local retry_at = nil
for _, l in ipairs(limits) do
  if l.interval then
    if l.taken > 0 then
      l.next_us = math.max(l.next_us, now_us) + l.interval * l.taken
      redis.call('HSET', lkey(l.key), 'next_start_us', int(l.next_us))
    end
    if l.next_us > now_us and #claimed < limit then
      local at = math.floor(l.next_us / 1000) + 1
      if retry_at == nil or at < retry_at then retry_at = at end
    end
  end
end
flush()
return { claimed, retry_at and int(retry_at) or false }
