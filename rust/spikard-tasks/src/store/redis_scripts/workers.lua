-- The worker registry: a hash `workers`, name -> the worker's JSON (serde's compact
-- form of WorkerInfo). 'beat' updates heartbeat_at_ms and jobs_held of a row, or writes
-- the whole row when there is none (it was removed as gone).
-- ARGV: prefix, 'beat', name, JSON, heartbeat_at_ms, jobs_held. Returns 1.
local key = P .. 'workers'
local name = ARGV[3]
local row = redis.call('HGET', key, name)
if not row then
  redis.call('HSET', key, name, ARGV[4])
  return 1
end
-- Field names appear unescaped only as keys: inside a JSON string a quote is escaped.
local n1, n2
row, n1 = string.gsub(row, '"heartbeat_at_ms":%-?%d+', '"heartbeat_at_ms":' .. ARGV[5], 1)
row, n2 = string.gsub(row, '"jobs_held":%d+', '"jobs_held":' .. ARGV[6], 1)
if n1 ~= 1 or n2 ~= 1 then row = ARGV[4] end
redis.call('HSET', key, name, row)
return 1
