-- Puts jobs claimed by `worker` back without counting the attempt (graceful shutdown).
-- ARGV: prefix, worker, all (1|0), ids... Returns how many were released.
local worker = ARGV[2]
local wk = wkey(worker)
local ids
if ARGV[3] == '1' then
  ids = redis.call('SMEMBERS', wk)
else
  ids = {}
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local released = 0
local woken = {}
for _, id in ipairs(ids) do
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'locked_by', 'attempts', 'queue', 'priority', 'run_at')
  if h[1] == 'running' and h[2] == worker then
    local queue = h[4]
    local attempts = (tonumber(h[3]) or 1) - 1
    local status = attempts > 0 and 'retrying' or 'pending'
    redis.call('HSET', k, 'status', status, 'attempts', int(attempts))
    redis.call('HDEL', k, 'started_at')
    unlock(k, id, worker)
    count(queue, 'running', -1)
    count(queue, status, 1)
    make_ready(queue, h[5], h[6], id)
    woken[queue] = true
    released = released + 1
  elseif h[2] ~= worker then
    redis.call('SREM', wk, id)
  end
end
flush()
for queue in pairs(woken) do wake(queue) end
return released
