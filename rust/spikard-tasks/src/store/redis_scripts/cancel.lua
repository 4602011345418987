-- Cancels a job that has not started, or asks a running one to stop.
-- ARGV: prefix, now, id. Returns 1 or 0.
local now, id = ARGV[2], ARGV[3]
local k = jkey(id)
local h = redis.call('HMGET', k, 'status', 'queue', 'priority', 'run_at', 'unique_key',
  'enqueued_at')
local status, queue = h[1], h[2]
if status == 'pending' or status == 'retrying' then
  redis.call('HSET', k, 'status', 'cancelled', 'finished_at', now,
    'cancel_reason', 'cancelled by request')
  redis.call('ZREM', qkey(queue, 'ready'), member(h[3], h[4], id))
  redis.call('ZREM', qkey(queue, 'scheduled'), id)
  redis.call('ZREM', qkey(queue, 'retry'), id)
  count(queue, status, -1)
  count(queue, 'cancelled', 1)
  finish(queue, id, h[5], now, 'cancelled', h[6])
  flush()
  return 1
end
if status == 'running' then
  redis.call('HSET', k, 'cancel_requested', '1')
  return 1
end
return 0
