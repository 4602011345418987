-- Deletes jobs that finished before `before`, at most `batch` of them, from every index.
-- ARGV: prefix, before, batch. Returns { deleted, scanned }.
local before, batch = ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', '(' .. before, 'LIMIT', 0, batch)
local deleted = 0
for _, id in ipairs(ids) do
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'queue')
  if is_finished(h[1]) then
    count(h[2], h[1], -1)
    unfinish(h[2], h[1], id)
    unindex_job(h[2], id)
    redis.call('DEL', k)
    deleted = deleted + 1
  else
    defer('ZREM', FINISHED, id)
  end
end
flush()
return { deleted, #ids }
