-- Takes (ARGV[2] = 'take') or gives back (ARGV[2] = 'give') the maintenance lock.
-- ARGV: prefix, take|give, worker, ttl_ms. Returns 1 when taken or given back.
local key = P .. 'maintenance'
if ARGV[2] == 'take' then
  if redis.call('SET', key, ARGV[3], 'NX', 'PX', ARGV[4]) then return 1 end
  return 0
end
if redis.call('GET', key) == ARGV[3] then
  redis.call('DEL', key)
  return 1
end
return 0
