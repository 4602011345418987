-- Claims up to `limit` ready jobs of the given queues for a worker.
-- ARGV: prefix, now, lease_until, worker, limit, promote_cap, queues...
-- Returns one array per job: id, queue, task, args, kwargs, attempts, max_attempts,
-- timeout_ms, priority, enqueued_at, trace_context, run_at (missing fields are nil).
local now, lease_until, worker = ARGV[2], ARGV[3], ARGV[4]
local limit, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local queues = {}
for i = 7, #ARGV do queues[#queues + 1] = ARGV[i] end

-- Scheduled and retrying jobs whose run_at has come join the ready set.
promote_due(queues, now, cap)

local claimed = {}
for _ = 1, 8 do
  local want = limit - #claimed
  if want <= 0 then break end
  local candidates = {}
  for _, queue in ipairs(queues) do
    local members = redis.call('ZRANGE', qkey(queue, 'ready'), '-', '+', 'BYLEX', 'LIMIT', 0, want)
    for _, m in ipairs(members) do candidates[#candidates + 1] = { m, queue } end
  end
  if #candidates == 0 then break end
  if #queues > 1 then table.sort(candidates, function(a, b) return byte_before(a[1], b[1]) end) end
  local stale = false
  for i = 1, math.min(want, #candidates) do
    local m, queue = candidates[i][1], candidates[i][2]
    local id = string.sub(m, MEMBER_PREFIX + 1)
    local k = jkey(id)
    local h = redis.call('HMGET', k, 'status', 'attempts', 'queue', 'task', 'args', 'kwargs',
      'max_attempts', 'timeout_ms', 'priority', 'enqueued_at', 'trace_context', 'run_at')
    if h[1] == 'pending' or h[1] == 'retrying' then
      local attempts = claim_job(k, id, m, queue, h[1], h[2], worker, lease_until)
      claimed[#claimed + 1] = { id, h[3], h[4], h[5], h[6], attempts, h[7], h[8], h[9], h[10],
        h[11], h[12] }
    else
      defer('ZREM', qkey(queue, 'ready'), m)  -- gone or no longer waiting
      stale = true
    end
  end
  -- The next round reads the ready sets again: they must no longer hold these members.
  flush()
  if not stale then break end
end
return claimed
