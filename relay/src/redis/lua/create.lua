-- create (PUT): KEYS c m l; ARGV channel_timeout.
-- Reply {1, messages, requested, subscribers, time, tag}.
local now, nowms, raw = clock()
if not exists() then create(now, raw) end
redis.call('HSET', C, 'sender', '1')
keep(tonumber(ARGV[1]) * 1000)
local i = info(now, nowms)
return {1, i[1], i[2], i[3], i[4], i[5]}
