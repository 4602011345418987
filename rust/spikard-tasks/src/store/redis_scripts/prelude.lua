-- Shared helpers, prepended to every script. ARGV[1] is the key prefix (`spikard:`).
-- Numbers that are times or ids travel as strings from the client and are stored as
-- given: Lua numbers are doubles and would print large values in exponent form.
local P = ARGV[1]
local RUNNING = P .. 'running'
local FINISHED = P .. 'finished'
-- The known queues.
local QUEUES = P .. 'queues'

local function jkey(id) return P .. 'job:' .. id end
-- `queue or ''`: a corrupt hash without a queue must not abort a script half-way.
local function qkey(queue, what) return P .. 'q:' .. (queue or '') .. ':' .. what end
local function wkey(worker) return P .. 'worker:' .. worker end
-- Jobs of one queue by enqueued_at, and its finished jobs of one state by enqueued_at
-- (the job list's indexes; the list of every queue merges them).
local function qjobs(queue) return qkey(queue, 'jobs') end
local function skey(queue, status) return qkey(queue, 's:' .. status) end
-- Finished jobs of one queue and state by finished_at (last-minute figures, purge).
local function fkey(queue, status) return qkey(queue, 'fin:' .. status) end
local function int(n) return string.format('%d', n) end

-- Ready-set member: every score is 0, so ZRANGE BYLEX orders by this string:
-- (i32::MAX - priority) as 10 digits, run_at + 1e15 as 16 digits, then the id.
local MEMBER_PREFIX = 26
local function member(priority, run_at, id)
  local p = tonumber(priority) or 0
  if p > 2147483647 then p = 2147483647 elseif p < -2147483648 then p = -2147483648 end
  local r = (tonumber(run_at) or 0) + 1e15
  if r < 0 then r = 0 elseif r > 9e15 then r = 9e15 end
  return string.format('%010d%016d', 2147483647 - p, r) .. id
end

local function wake(queue) redis.call('PUBLISH', P .. 'wake:' .. queue, '1') end

-- Writes gathered during a script and sent by `flush()` (which every script calls
-- before it returns): a batch of N jobs then costs one ZADD/ZREM/SADD/SREM per key and
-- one HINCRBY per (queue, state), not a call of each per job.
local later, later_order = {}, {}
local deltas, delta_order = {}, {}

-- Queues `cmd key args...` (a variadic set command) to be sent with others to that key.
local function defer(cmd, key, ...)
  local slot = cmd .. ' ' .. key
  local b = later[slot]
  if not b then
    b = { cmd, key }
    later[slot] = b
    later_order[#later_order + 1] = slot
  end
  for i = 1, select('#', ...) do b[#b + 1] = select(i, ...) end
end

-- The job joins its queue's ready set (at the next flush).
local function make_ready(queue, priority, run_at, id)
  defer('ZADD', qkey(queue, 'ready'), 0, member(priority, run_at, id))
end

-- Per-queue counters of stored states.
local function count(queue, status, n)
  local slot = qkey(queue, 'counts') .. ' ' .. status
  if deltas[slot] == nil then
    deltas[slot] = { qkey(queue, 'counts'), status, 0 }
    delta_order[#delta_order + 1] = slot
  end
  deltas[slot][3] = deltas[slot][3] + n
end

local function flush()
  for _, slot in ipairs(later_order) do
    local b = later[slot]
    -- In slices of 1000 values (an even number: ZADD takes pairs); Lua's unpack is
    -- limited to a few thousand values.
    for i = 3, #b, 1000 do
      redis.call(b[1], b[2], unpack(b, i, math.min(#b, i + 999)))
    end
  end
  for _, slot in ipairs(delta_order) do
    local d = deltas[slot]
    if d[3] ~= 0 then redis.call('HINCRBY', d[1], d[2], d[3]) end
  end
  later, later_order, deltas, delta_order = {}, {}, {}, {}
end

-- Optional arguments: '' is none, otherwise the value behind a one-character marker.
local function opt(s)
  if s == nil or s == '' then return nil end
  return string.sub(s, 2)
end

local function is_finished(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end

-- Appends one JSON object to a JSON array kept as text.
local function append_error(errors, e)
  if not errors or errors == '' or errors == '[]' then return '[' .. e .. ']' end
  return string.sub(errors, 1, -2) .. ',' .. e .. ']'
end

local function release_unique(queue, key, id)
  if key then
    local u = qkey(queue, 'unique')
    if redis.call('HGET', u, key) == id then redis.call('HDEL', u, key) end
  end
end

-- A job leaves `running`: drop its lease and the lease indexes.
-- The lease indexes forget the job (at the next flush).
local function drop_lease(id, worker)
  defer('ZREM', RUNNING, id)
  if worker then defer('SREM', wkey(worker), id) end
end

local function unlock(k, id, worker)
  redis.call('HDEL', k, 'locked_by', 'lease_until')
  drop_lease(id, worker)
end

-- A job reaches the finished `status` (its places in `finished`, the state's list
-- index and the queue's by-time set at the next flush).
local function finish(queue, id, unique_key, now, status, enqueued_at)
  defer('ZADD', FINISHED, now, id)
  defer('ZADD', skey(queue, status), enqueued_at or '0', id)
  defer('ZADD', fkey(queue, status), now, id)
  release_unique(queue, unique_key, id)
end

-- A finished job leaves the finished indexes (retried or purged; at the next flush).
local function unfinish(queue, status, id)
  defer('ZREM', FINISHED, id)
  defer('ZREM', skey(queue, status), id)
  defer('ZREM', fkey(queue, status), id)
end

-- A job joins (or leaves) the job list's indexes (at the next flush).
local function index_job(queue, enqueued_at, id)
  defer('ZADD', qjobs(queue), enqueued_at or '0', id)
end
local function unindex_job(queue, id)
  defer('ZREM', qjobs(queue), id)
end

-- Scheduled and retrying jobs of `queues` whose run_at has come (at most `cap` per set)
-- join the ready sets (flushed before it returns: the claim then reads those sets).
local function promote_due(queues, now, cap)
  for _, queue in ipairs(queues) do
    for _, set in ipairs({ 'scheduled', 'retry' }) do
      local key = qkey(queue, set)
      local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, cap)
      for _, id in ipairs(due) do
        local h = redis.call('HMGET', jkey(id), 'status', 'priority', 'run_at')
        if h[1] == 'pending' or h[1] == 'retrying' then
          make_ready(queue, h[2], h[3], id)
        end
        defer('ZREM', key, id)
      end
    end
  end
  flush()
end

-- Byte-wise order of ready members (Lua's `<` on strings follows the server's locale).
local function byte_before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Claims waiting job `id` (hash `k`, ready member `m` of `queue`, in state `status` after
-- `attempts` attempts) for `worker`: running with its attempt counted and a lease, not
-- started until the worker says so (mark.lua, or the outcome). Returns the attempt.
local function claim_job(k, id, m, queue, status, attempts, worker, lease_until)
  local attempt = int((tonumber(attempts) or 0) + 1)
  redis.call('HSET', k, 'status', 'running', 'attempts', attempt, 'locked_by', worker,
    'lease_until', lease_until)
  redis.call('HDEL', k, 'started_at')
  defer('ZREM', qkey(queue, 'ready'), m)
  defer('ZADD', RUNNING, lease_until, id)
  defer('SADD', wkey(worker), id)
  count(queue, status, -1)
  count(queue, 'running', 1)
  return attempt
end
