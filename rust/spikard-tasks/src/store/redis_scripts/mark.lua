-- Records that held jobs began running.
-- ARGV: prefix, worker, then pairs of id, started_at. Returns how many were marked.
local worker = ARGV[2]
local marked = 0
for i = 3, #ARGV - 1, 2 do
  local k = jkey(ARGV[i])
  local h = redis.call('HMGET', k, 'status', 'locked_by')
  if h[1] == 'running' and h[2] == worker then
    redis.call('HSET', k, 'started_at', ARGV[i + 1])
    marked = marked + 1
  end
end
return marked
