-- Keys and running counts of flow control (redis_limits.rs), after the prelude.
-- Every stored limit's key (`task:NAME` or `queue:NAME`).
local LIMITS = P .. 'limits'
-- A limit's hash: scope, name, rate_count, rate_period_ms, max_running, next_start_us.
local function lkey(key) return P .. 'lim:' .. key end
-- The ids of jobs claimed under a limit (those still `running` are its running count).
local function lrun(key) return P .. 'limrun:' .. key end

-- Removes from a limit's running set the given members whose job is no longer running.
local function drop_finished(key, ids)
  local dead = {}
  for _, id in ipairs(ids) do
    if redis.call('HGET', jkey(id), 'status') ~= 'running' then dead[#dead + 1] = id end
  end
  for i = 1, #dead, 1000 do
    redis.call('SREM', lrun(key), unpack(dead, i, math.min(#dead, i + 999)))
  end
end

-- The jobs running under a limit now: its set pruned of every job no longer running.
local function running_under(key)
  drop_finished(key, redis.call('SMEMBERS', lrun(key)))
  return redis.call('SCARD', lrun(key))
end

-- Prunes up to `n` random members of a limit's set (a limit without a cap: its count is
-- only read by `limits`, which prunes all; this keeps the set near its running jobs).
local function prune_some(key, n)
  drop_finished(key, redis.call('SRANDMEMBER', lrun(key), n))
end
