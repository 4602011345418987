-- Figures of every known or paused queue, by cardinalities (no scan of jobs).
-- ARGV: prefix, now. Returns one array per queue: name, paused (1|0), scheduled (pending
-- with a future run_at), oldest ready run_at ('' for none), succeeded and failed within
-- the minute before now, then the stored per-state counters as field, value pairs.
-- A known queue with no job left that is not paused is forgotten here.
local now = tonumber(ARGV[2])
local now_s = ARGV[2]
local minute_ago = '(' .. int(now - 60000)
local paused = {}
local names = redis.call('SMEMBERS', QUEUES)
local listed = {}
for _, name in ipairs(names) do listed[name] = true end
for _, name in ipairs(redis.call('HKEYS', P .. 'paused')) do
  paused[name] = true
  if not listed[name] then names[#names + 1] = name end
end

-- The smallest run_at of a ready job: the ready set is ordered by priority first, so
-- take the head of each priority band (at most BANDS of them), then the due heads of
-- the scheduled and retry sets (due jobs a claim has not moved yet).
local BANDS = 64
local function oldest_ready(queue)
  local best = nil
  local function consider(at)
    if at and at <= now and (best == nil or at < best) then best = at end
  end
  local key, from = qkey(queue, 'ready'), '-'
  for _ = 1, BANDS do
    local m = redis.call('ZRANGE', key, from, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
    if not m then break end
    consider((tonumber(string.sub(m, 11, 26)) or 0) - 1e15)
    -- Past every member of this band: ':' sorts after the digits.
    from = '(' .. string.sub(m, 1, 10) .. ':'
  end
  for _, set in ipairs({ 'scheduled', 'retry' }) do
    local due = redis.call('ZRANGEBYSCORE', qkey(queue, set), '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, 1)
    consider(tonumber(due[2]))
  end
  return best and int(best) or ''
end

local out = {}
for _, name in ipairs(names) do
  local counts = redis.call('HGETALL', qkey(name, 'counts'))
  local total = 0
  for i = 2, #counts, 2 do total = total + (tonumber(counts[i]) or 0) end
  if total <= 0 and not paused[name] then
    redis.call('SREM', QUEUES, name)
  else
    local row = {
      name,
      paused[name] and '1' or '0',
      int(redis.call('ZCOUNT', qkey(name, 'scheduled'), '(' .. now_s, '+inf')),
      oldest_ready(name),
      int(redis.call('ZCOUNT', fkey(name, 'succeeded'), minute_ago, now_s)),
      int(redis.call('ZCOUNT', fkey(name, 'failed'), minute_ago, now_s)),
    }
    for _, v in ipairs(counts) do row[#row + 1] = v end
    out[#out + 1] = row
  end
end
return out
