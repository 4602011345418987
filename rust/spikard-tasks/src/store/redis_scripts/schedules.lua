-- Cron schedules: save (create or replace, keeping the last tick), list or remove.
-- ARGV: prefix, op, then for save: name, definition, now; for remove: name.
local names = P .. 'schedules'
local op = ARGV[2]
if op == 'save' then
  local k = P .. 'schedule:' .. ARGV[3]
  if redis.call('HEXISTS', k, 'last_tick') == 0 then redis.call('HSET', k, 'last_tick', ARGV[5]) end
  redis.call('HSET', k, 'definition', ARGV[4], 'updated_at', ARGV[5])
  redis.call('ZADD', names, 0, ARGV[3])
  return 1
elseif op == 'remove' then
  redis.call('ZREM', names, ARGV[3])
  return redis.call('DEL', P .. 'schedule:' .. ARGV[3])
end
-- list: name, definition, last_tick, updated_at per schedule, by name
local out = {}
for _, name in ipairs(redis.call('ZRANGE', names, '-', '+', 'BYLEX')) do
  local h = redis.call('HMGET', P .. 'schedule:' .. name, 'definition', 'last_tick', 'updated_at')
  if h[1] and h[2] and h[3] then
    out[#out + 1] = name
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
    out[#out + 1] = h[3]
  end
end
return out
