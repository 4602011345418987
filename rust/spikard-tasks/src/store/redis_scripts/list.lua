-- One page of the job list: jobs matching a filter, newest first (enqueued_at DESC, id
-- DESC), strictly after a cursor, walking an index by enqueued_at until `limit` jobs
-- matched or `budget` entries were examined: when only finished states are asked for,
-- the `q:{queue}:s:{state}` sets of the filter's queue, else its `q:{queue}:jobs`;
-- without a queue, those of every known queue merged.
-- ARGV: prefix, now, limit, budget, filter (5 arguments, see read_filter), cursor
-- enqueued_at (opt), cursor id (opt), then the filter's job ids if any (see read_ids).
-- Returns { { exhausted (1|0), last examined score, last examined id } } followed by one
-- array per job: its id, then its hash as field, value pairs.
local now = tonumber(ARGV[2])
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local f = read_filter(5)
read_ids(f, 12)
local cs, cm = opt(ARGV[10]), opt(ARGV[11]) or ''
-- `until` is a cursor too: whichever comes later in the walk.
if f.until_ and (cs == nil or tonumber(cs) >= f.until_) then cs, cm = f.until_s, '' end

local keys = {}
local finished_only = not f.any
for s in pairs(f.want) do
  if not is_finished(s) then finished_only = false end
end
local queues = f.queue and { f.queue } or redis.call('SMEMBERS', QUEUES)
for _, q in ipairs(queues) do
  if finished_only then
    for _, s in ipairs({ 'succeeded', 'failed', 'cancelled' }) do
      if f.want[s] then keys[#keys + 1] = skey(q, s) end
    end
  else
    keys[#keys + 1] = qjobs(q)
  end
end
-- Many sources (many queues) read smaller chunks each.
local chunk = math.max(8, math.min(WALK_CHUNK, math.floor(budget / math.max(1, #keys))))
local sources = {}
for _, key in ipairs(keys) do sources[#sources + 1] = source(key, cs, cm, f.since_s, chunk) end

local found = {}
local last, exhausted = walk(sources, budget, function(e)
  local h = redis.call('HMGET', jkey(e.m), unpack(FILTER_FIELDS))
  if matches(f, h, now, e.m) then found[#found + 1] = e.m end
  return #found >= limit
end)

local out = { { exhausted and '1' or '0', last and last.ss or '', last and last.m or '' } }
for _, id in ipairs(found) do
  local row = { id }
  for _, v in ipairs(redis.call('HGETALL', jkey(id))) do row[#row + 1] = v end
  out[#out + 1] = row
end
return out
