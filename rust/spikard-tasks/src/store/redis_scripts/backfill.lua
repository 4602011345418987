-- Adds jobs written before the operations indexes existed to them (idempotent): the job
-- list's per-queue and per-state sets, the per-queue finished-by-time sets, the known queues.
-- ARGV: prefix, ids... Returns how many jobs were indexed.
local known = {}
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local h = redis.call('HMGET', jkey(id), 'status', 'queue', 'enqueued_at', 'finished_at')
  if h[1] and h[2] then
    local enqueued_at = h[3] or '0'
    index_job(h[2], enqueued_at, id)
    if not known[h[2]] then
      known[h[2]] = true
      defer('SADD', QUEUES, h[2])
    end
    if is_finished(h[1]) then
      defer('ZADD', skey(h[2], h[1]), enqueued_at, id)
      defer('ZADD', fkey(h[2], h[1]), h[4] or '0', id)
    end
    n = n + 1
  end
end
flush()
return n
