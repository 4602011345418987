-- Rescues running jobs whose lease expired (see `Store::rescue_expired` for the rule:
-- an attempt whose start was never recorded is given back, once).
-- ARGV: prefix, now, batch, LOST text, LOST_UNSTARTED text. Returns { rescued, scanned }.
local now, batch = ARGV[2], tonumber(ARGV[3])
local LOST, LOST_UNSTARTED = ARGV[4], ARGV[5]

-- True when the latest error entry says this very attempt was rescued unstarted.
local function lost_unstarted_before(errors, attempts)
  if not errors or errors == '' then return false end
  local ok, list = pcall(cjson.decode, errors)
  if not ok or type(list) ~= 'table' or #list == 0 then return false end
  local last = list[#list]
  return type(last) == 'table' and last.error == LOST_UNSTARTED
    and tonumber(last.attempt) == attempts
end
local expired = redis.call('ZRANGEBYSCORE', RUNNING, '-inf', '(' .. now, 'LIMIT', 0, batch)
local rescued = 0
for _, id in ipairs(expired) do
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'status', 'locked_by', 'attempts', 'max_attempts', 'queue',
    'priority', 'errors', 'unique_key', 'started_at', 'enqueued_at')
  if h[1] == 'running' then
    local queue = h[5]
    local attempts = tonumber(h[3]) or 0
    local counted = h[9] ~= false or lost_unstarted_before(h[7], attempts)
    local failed = counted and attempts >= (tonumber(h[4]) or 0)
    local status = failed and 'failed' or 'retrying'
    local err = '{"attempt":' .. int(attempts) .. ',"error":"' .. (counted and LOST or LOST_UNSTARTED)
      .. '","traceback":null,"at_ms":' .. now .. '}'
    if not counted then
      attempts = attempts - 1
      if attempts < 1 then status = 'pending' end
      redis.call('HSET', k, 'attempts', int(attempts))
    end
    redis.call('HSET', k, 'status', status, 'errors', append_error(h[7], err), 'run_at', now)
    if failed then
      redis.call('HSET', k, 'finished_at', now)
    else
      redis.call('HDEL', k, 'finished_at')
    end
    unlock(k, id, h[2] or nil)
    count(queue, 'running', -1)
    count(queue, status, 1)
    if failed then
      finish(queue, id, h[8], now, 'failed', h[10])
    else
      make_ready(queue, h[6], now, id)
      wake(queue)
    end
    rescued = rescued + 1
  else
    redis.call('ZREM', RUNNING, id)
  end
end
flush()
return { rescued, #expired }
