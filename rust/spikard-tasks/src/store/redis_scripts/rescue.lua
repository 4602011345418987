-- Moves running jobs whose lease expired to retrying (or failed when no attempts are left).
-- ARGV: prefix, now, batch. Returns { rescued, scanned }.
local now, batch = ARGV[2], tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', RUNNING, '-inf', '(' .. now, 'LIMIT', 0, batch)
local rescued = 0
for _, id in ipairs(expired) do
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'locked_by', 'attempts', 'max_attempts', 'queue',
    'priority', 'errors', 'unique_key')
  if h[1] == 'running' then
    local queue = h[5]
    local attempts = tonumber(h[3]) or 0
    local failed = attempts >= (tonumber(h[4]) or 0)
    local status = failed and 'failed' or 'retrying'
    local err = '{"attempt":' .. int(attempts) .. ',"error":"WorkerLost: the worker running '
      .. 'this attempt stopped renewing its lease","traceback":null,"at_ms":' .. now .. '}'
    redis.call('HSET', k, 'status', status, 'errors', append_error(h[7], err), 'run_at', now)
    if failed then
      redis.call('HSET', k, 'finished_at', now)
    else
      redis.call('HDEL', k, 'finished_at')
    end
    unlock(k, id, h[2] or nil)
    count(queue, 'running', -1)
    count(queue, status, 1)
    if failed then
      finish(queue, id, h[8], now)
    else
      make_ready(queue, h[6], now, id)
      wake(queue)
    end
    rescued = rescued + 1
  else
    redis.call('ZREM', RUNNING, id)
  end
end
flush()
return { rescued, #expired }
