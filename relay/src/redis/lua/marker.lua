-- marker: KEYS marker; ARGV floor. The second this namespace's data began:
-- set when missing (a new namespace, or a Redis that lost its data) to
-- the later of Redis's clock and `floor` (one more than the marker the
-- calling worker saw before, so a Redis restarted within the second its
-- marker was set still moves on). Reply the marker, as a string.
local t = tonumber(redis.call('TIME')[1])
local floor = tonumber(ARGV[1]) or 0
if floor > t then t = floor end
redis.call('SET', KEYS[1], t, 'NX')
return redis.call('GET', KEYS[1])
