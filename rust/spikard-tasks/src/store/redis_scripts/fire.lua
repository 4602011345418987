-- Claims tick `tick` of a cron schedule, if its last tick is older; `enqueue.lua`
-- follows in the same script and inserts the tick's job (n is 0 or 1).
-- ARGV: as enqueue.lua, then the schedule name and the tick. Returns { 'lost' } when
-- the tick was lost (another scheduler had it, or the schedule is gone), else the reply
-- of enqueue.lua: {} when the job was created, { 0, existing id } when its unique key
-- matched an unfinished job.
local schedule = P .. 'schedule:' .. ARGV[#ARGV - 1]
local tick = ARGV[#ARGV]
local last = redis.call('HGET', schedule, 'last_tick')
if not last or tonumber(last) >= tonumber(tick) then return { 'lost' } end
if ARGV[3] == '1' and redis.call('EXISTS', jkey(ARGV[4])) == 1 then
  return redis.error_reply('duplicate job id ' .. ARGV[4])
end
redis.call('HSET', schedule, 'last_tick', tick)
