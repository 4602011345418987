-- Job counts of one queue: scheduled (pending with a future run_at), then the stored
-- per-state counters as field, value pairs.
-- ARGV: prefix, queue, now.
local queue, now = ARGV[2], ARGV[3]
local out = { int(redis.call('ZCOUNT', qkey(queue, 'scheduled'), '(' .. now, '+inf')) }
for _, v in ipairs(redis.call('HGETALL', qkey(queue, 'counts'))) do out[#out + 1] = v end
return out
