-- Renews the leases of every job `worker` runs.
-- ARGV: prefix, worker, lease_until. Returns ids whose cancellation was requested.
local worker, lease_until = ARGV[2], ARGV[3]
local wk = wkey(worker)
local cancel = {}
for _, id in ipairs(redis.call('SMEMBERS', wk)) do
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'locked_by', 'cancel_requested')
  if h[1] == 'running' and h[2] == worker then
    redis.call('HSET', k, 'lease_until', lease_until)
    redis.call('ZADD', RUNNING, lease_until, id)
    if h[3] == '1' then cancel[#cancel + 1] = id end
  else
    redis.call('SREM', wk, id)
  end
end
return cancel
