-- Writes attempt outcomes, each only while `worker` holds that attempt's lease.
-- ARGV: prefix, now, worker, n, then 8 per outcome: id, attempt, status, result (opt),
-- run_at (opt), error (opt JSON object), cancel reason (opt), started_at (opt).
-- Returns how many were written.
local now, worker = ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local F = 8
local written = 0
local woken = {}
for i = 0, n - 1 do
  local b = 5 + i * F
  local id, attempt, status = ARGV[b], tonumber(ARGV[b + 1]), ARGV[b + 2]
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'locked_by', 'attempts', 'queue', 'priority',
    'run_at', 'errors', 'unique_key', 'enqueued_at')
  if h[1] == 'running' and h[2] == worker and tonumber(h[3]) == attempt then
    local queue = h[4]
    local result, run_at = opt(ARGV[b + 3]), opt(ARGV[b + 4]) or h[6]
    local err, reason = opt(ARGV[b + 5]), opt(ARGV[b + 6])
    local done = is_finished(status)
    local sets = { 'status', status, 'run_at', run_at }
    local started = opt(ARGV[b + 7])
    if started then
      sets[#sets + 1] = 'started_at'; sets[#sets + 1] = started
    end
    local dels = { 'locked_by', 'lease_until' }
    if result then
      sets[#sets + 1] = 'result'; sets[#sets + 1] = result
    else
      dels[#dels + 1] = 'result'
    end
    if err then
      sets[#sets + 1] = 'errors'; sets[#sets + 1] = append_error(h[7], err)
    end
    if reason then
      sets[#sets + 1] = 'cancel_reason'; sets[#sets + 1] = reason
    end
    if done then
      sets[#sets + 1] = 'finished_at'; sets[#sets + 1] = now
    else
      dels[#dels + 1] = 'finished_at'
    end
    redis.call('HSET', k, unpack(sets))
    redis.call('HDEL', k, unpack(dels))
    drop_lease(id, worker)
    count(queue, 'running', -1)
    count(queue, status, 1)
    if done then
      finish(queue, id, h[8], now, status, h[9])
    elseif tonumber(run_at) > tonumber(now) then
      defer('ZADD', qkey(queue, 'retry'), run_at, id)
    else
      make_ready(queue, h[5], run_at, id)
      woken[queue] = true
    end
    written = written + 1
  end
end
flush()
for queue in pairs(woken) do wake(queue) end
return written
