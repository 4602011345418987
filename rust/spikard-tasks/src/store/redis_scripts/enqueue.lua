-- Inserts a batch of jobs, all or nothing.
-- ARGV: prefix, now, n, then 12 per job: id, queue, task, args, kwargs, priority,
-- max_attempts, run_at, timeout_ms (opt), unique_key (opt), enqueued_at,
-- trace_context (opt).
-- Returns, for each job not created because an unfinished job has its unique key, its
-- 0-based position and that job's id (an empty reply: every job was created).
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local F = 12

-- Validate everything before the first write: one EXISTS per 1000 ids, and a look at
-- each id of a slice only when that slice has a taken one.
local seen, keys = {}, {}
for i = 0, n - 1 do
  local id = ARGV[4 + i * F]
  if seen[id] then return redis.error_reply('duplicate job id ' .. id) end
  seen[id] = true
  keys[#keys + 1] = jkey(id)
end
for i = 1, #keys, 1000 do
  local last = math.min(#keys, i + 999)
  if redis.call('EXISTS', unpack(keys, i, last)) > 0 then
    for j = i, last do
      if redis.call('EXISTS', keys[j]) == 1 then
        return redis.error_reply('duplicate job id ' .. ARGV[4 + (j - 1) * F])
      end
    end
  end
end

local out = {}
local woken, known = {}, {}
for i = 0, n - 1 do
  local b = 4 + i * F
  local id, queue, run_at = ARGV[b], ARGV[b + 1], ARGV[b + 7]
  local unique_key = opt(ARGV[b + 9])
  local existing = nil
  if unique_key then
    local uid = redis.call('HGET', qkey(queue, 'unique'), unique_key)
    if uid then
      local st = redis.call('HGET', jkey(uid), 'status')
      if st == 'pending' or st == 'running' or st == 'retrying' then existing = uid end
    end
  end
  if existing then
    out[#out + 1] = i
    out[#out + 1] = existing
  else
    -- The id is in the key; an absent cancel_requested means none was.
    local fields = {
      'queue', queue, 'task', ARGV[b + 2], 'args', ARGV[b + 3],
      'kwargs', ARGV[b + 4], 'status', 'pending', 'priority', ARGV[b + 5], 'attempts', '0',
      'max_attempts', ARGV[b + 6], 'run_at', run_at, 'enqueued_at', ARGV[b + 10],
    }
    local timeout_ms = opt(ARGV[b + 8])
    if timeout_ms then
      fields[#fields + 1] = 'timeout_ms'
      fields[#fields + 1] = timeout_ms
    end
    if unique_key then
      fields[#fields + 1] = 'unique_key'
      fields[#fields + 1] = unique_key
      redis.call('HSET', qkey(queue, 'unique'), unique_key, id)
    end
    local trace_context = opt(ARGV[b + 11])
    if trace_context then
      fields[#fields + 1] = 'trace_context'
      fields[#fields + 1] = trace_context
    end
    redis.call('HSET', jkey(id), unpack(fields))
    if tonumber(run_at) > now then
      redis.call('ZADD', qkey(queue, 'scheduled'), run_at, id)
    else
      make_ready(queue, ARGV[b + 5], run_at, id)
      woken[queue] = true
    end
    count(queue, 'pending', 1)
    index_job(queue, ARGV[b + 10], id)
    if not known[queue] then
      known[queue] = true
      defer('SADD', QUEUES, queue)
    end
  end
end
flush()
for queue in pairs(woken) do wake(queue) end
return out
