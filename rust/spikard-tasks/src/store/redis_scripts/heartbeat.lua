-- Renews the leases of the listed jobs that `worker` still runs.
-- ARGV: prefix, worker, lease_until, id... Returns ids whose cancellation was requested.
-- Jobs in the worker's set but not listed (a claim whose reply never reached the
-- worker) are not renewed: their leases expire and the rescue re-queues them.
local worker, lease_until = ARGV[2], ARGV[3]
local wk = wkey(worker)
local cancel = {}
for i = 4, #ARGV do
  local id = ARGV[i]
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
