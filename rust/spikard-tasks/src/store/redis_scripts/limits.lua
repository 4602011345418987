-- Stores, removes and lists the limits of flow control.
-- ARGV: prefix, op, then per op:
--   set: key, scope, name, rate_count (opt), rate_period_ms (opt), max_running (opt)
--     stores the limit (its next_start_us kept, 0 when new); a new limit's running set
--     starts with the running jobs it covers (a walk of the lease index). Returns 1.
--   remove: key. Returns 1 when a limit was removed, else 0.
--   list: usage ('1' counts running jobs). Returns 8 strings per limit, unsorted: key,
--     scope, name, rate_count, rate_period_ms, max_running ('' for none), next_start_us,
--     running ('0' when not counted).
local op = ARGV[2]

if op == 'set' then
  local key, scope, name = ARGV[3], ARGV[4], ARGV[5]
  local h = lkey(key)
  local new = redis.call('EXISTS', h) == 0
  local sets, dels = { 'scope', scope, 'name', name }, {}
  for i, field in ipairs({ 'rate_count', 'rate_period_ms', 'max_running' }) do
    local v = opt(ARGV[5 + i])
    if v then
      sets[#sets + 1] = field; sets[#sets + 1] = v
    else
      dels[#dels + 1] = field
    end
  end
  redis.call('HSET', h, unpack(sets))
  if #dels > 0 then redis.call('HDEL', h, unpack(dels)) end
  redis.call('HSETNX', h, 'next_start_us', '0')
  redis.call('SADD', LIMITS, key)
  if new then
    local field = scope == 'task' and 'task' or 'queue'
    local run = lrun(key)
    redis.call('DEL', run)
    local ids = redis.call('ZRANGE', RUNNING, 0, -1)
    for i = 1, #ids, 1000 do
      local add = {}
      for j = i, math.min(#ids, i + 999) do
        local f = redis.call('HMGET', jkey(ids[j]), 'status', field)
        if f[1] == 'running' and f[2] == name then add[#add + 1] = ids[j] end
      end
      if #add > 0 then redis.call('SADD', run, unpack(add)) end
    end
  end
  return 1
elseif op == 'remove' then
  local key = ARGV[3]
  redis.call('SREM', LIMITS, key)
  redis.call('DEL', lrun(key))
  return redis.call('DEL', lkey(key))
elseif op == 'list' then
  local usage = ARGV[3] == '1'
  local out = {}
  for _, key in ipairs(redis.call('SMEMBERS', LIMITS)) do
    local f = redis.call('HMGET', lkey(key), 'scope', 'name', 'rate_count', 'rate_period_ms',
      'max_running', 'next_start_us')
    if f[1] then
      local running = '0'
      if usage then running = int(running_under(key)) end
      out[#out + 1] = key
      for i = 1, 6 do out[#out + 1] = f[i] or '' end
      out[#out + 1] = running
    end
  end
  return out
end
return redis.error_reply('unknown limits operation ' .. tostring(op))
