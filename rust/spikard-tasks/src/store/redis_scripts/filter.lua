-- Job filters and the newest-first walk (`list.lua`, `bulk.lua`).

-- A filter from five arguments from ARGV[i] on: statuses (comma-separated; '' for any),
-- task, queue, since, until (each optional: '' for none, else a marker and the value).
local function read_filter(i)
  local f = { any = ARGV[i] == '', want = {} }
  for s in string.gmatch(ARGV[i], '[^,]+') do f.want[s] = true end
  f.task, f.queue = opt(ARGV[i + 1]), opt(ARGV[i + 2])
  f.since_s, f.until_s = opt(ARGV[i + 3]), opt(ARGV[i + 4])
  f.since, f.until_ = tonumber(f.since_s), tonumber(f.until_s)
  return f
end

-- The filter's job ids (`JobFilter::ids`): ARGV[i] to the last argument, each one id;
-- none: any job. `f.ids` is the set, `f.id_list` the ids in order.
local function read_ids(f, i)
  if #ARGV < i then return end
  f.ids, f.id_list = {}, {}
  for j = i, #ARGV do
    f.ids[ARGV[j]] = true
    f.id_list[#f.id_list + 1] = ARGV[j]
  end
end

-- The job fields `matches` reads, first in every HMGET of a filtered job.
local FILTER_FIELDS = { 'status', 'queue', 'task', 'run_at', 'enqueued_at' }

-- Whether a job (`h`: HMGET of FILTER_FIELDS first; `id` its id) matches; its state as
-- readers see it at `now` (a pending job whose run_at is ahead is scheduled).
local function matches(f, h, now, id)
  if not h[1] then return false end
  if f.ids and not f.ids[id] then return false end
  if f.queue and h[2] ~= f.queue then return false end
  if f.task and h[3] ~= f.task then return false end
  local enqueued_at = tonumber(h[5]) or 0
  if f.since and enqueued_at < f.since then return false end
  if f.until_ and enqueued_at >= f.until_ then return false end
  if f.any then return true end
  local shown = h[1]
  if shown == 'pending' and (tonumber(h[4]) or 0) > now then shown = 'scheduled' end
  return f.want[shown] == true
end

-- A zset walked newest first (score DESC, member DESC), strictly after the entry
-- (s, m) (s nil: from the top; m '': after every entry of score s), down to `floor`
-- (a score string, inclusive; nil for none), reading `chunk` entries at a time.
local WALK_CHUNK = 256
local function source(key, s, m, floor, chunk)
  return { key = key, s = s, m = m or '', floor = floor, chunk = chunk or WALK_CHUNK, buf = {},
    i = 1, done = false }
end

local function fill(src)
  local key, s, m = src.key, src.s, src.m
  local low = src.floor or '-inf'
  local n = src.chunk
  local raw
  if s == nil then
    raw = redis.call('ZREVRANGEBYSCORE', key, '+inf', low, 'WITHSCORES', 'LIMIT', 0, n)
  else
    local at = m ~= '' and redis.call('ZSCORE', key, m)
    if at and tonumber(at) == tonumber(s) then
      -- The cursor's entry is still there: continue from its rank.
      local r = redis.call('ZREVRANK', key, m)
      raw = redis.call('ZREVRANGE', key, r + 1, r + n, 'WITHSCORES')
    else
      -- It is gone: the rest of its score (members below it), then lower scores.
      raw = {}
      if m ~= '' then
        local off = 0
        repeat
          local eq = redis.call('ZREVRANGEBYSCORE', key, s, s, 'WITHSCORES', 'LIMIT', off, n)
          for j = 1, #eq, 2 do
            if byte_before(eq[j], m) then
              raw[#raw + 1] = eq[j]
              raw[#raw + 1] = eq[j + 1]
            end
          end
          off = off + n
        until #eq < 2 * n or #raw >= 2 * n
      end
      if #raw < 2 * n then
        local lower = redis.call('ZREVRANGEBYSCORE', key, '(' .. s, low, 'WITHSCORES', 'LIMIT', 0,
          n - #raw / 2)
        for _, v in ipairs(lower) do raw[#raw + 1] = v end
      end
    end
  end
  local floor = tonumber(src.floor)
  src.buf, src.i = {}, 1
  for j = 1, #raw, 2 do
    local score = tonumber(raw[j + 1])
    if floor and score < floor then break end
    src.buf[#src.buf + 1] = { s = score, ss = raw[j + 1], m = raw[j] }
  end
end

local function head(src)
  if src.done then return nil end
  if src.i > #src.buf then
    fill(src)
    if #src.buf == 0 then
      src.done = true
      return nil
    end
  end
  return src.buf[src.i]
end

-- Walks the sources merged newest first, calling visit(entry) ({ s, ss, m }) for each
-- until it returns true or `budget` entries were examined. Returns the last entry
-- examined (nil for none) and whether every source was walked to its end.
local function walk(sources, budget, visit)
  local last, n = nil, 0
  while n < budget do
    local best, from = nil, nil
    for _, src in ipairs(sources) do
      local e = head(src)
      if e and (best == nil or e.s > best.s or (e.s == best.s and byte_before(best.m, e.m))) then
        best, from = e, src
      end
    end
    if not best then return last, true end
    from.i = from.i + 1
    from.s, from.m = best.ss, best.m
    n = n + 1
    last = best
    if visit(best) then return last, false end
  end
  return last, false
end
