-- marker: KEYS marker. The Redis second this namespace's data began: set
-- when missing (a new namespace, or a Redis that lost its data).
-- Reply the second, as a string.
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1], 'NX')
return redis.call('GET', KEYS[1])
