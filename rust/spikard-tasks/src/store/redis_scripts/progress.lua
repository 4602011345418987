-- Writes a running job's progress (JSON text) into its hash.
-- ARGV: prefix, id, progress. Returns 1, or 0 when the job is not running.
local k = jkey(ARGV[2])
if redis.call('HGET', k, 'status') ~= 'running' then return 0 end
redis.call('HSET', k, 'progress', ARGV[3])
return 1
