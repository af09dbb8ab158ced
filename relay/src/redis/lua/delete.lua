-- delete: KEYS c m l; ARGV pubsub inline_max ref_ttl tombstone_ttl.
-- Reply {0} no such channel | {1, messages, requested, subscribers, time,
-- tag}: the info as it was. Leaves a tombstone (`dead` = the incarnation,
-- and the newest id) so that a server that was cut off can tell its
-- listeners 410, and ids never go backwards.
local now, nowms = clock()
if not exists() then return {0} end
local i = info(now, nowms)
local inline_max, ref_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('LRANGE', M, 0, -1)
for k = 1, #ids do
  local t, g = string.match(ids[k], '^(%d+):(%d+):')
  if t then drop(msgkey(t, g), inline_max, ref_ttl) end
end
local f = redis.call('HMGET', C, 'inc', 't', 'g')
redis.call('DEL', M, L, C)
redis.call('HSET', C, 'dead', f[1] or '')
if f[2] then redis.call('HSET', C, 't', f[2], 'g', f[3]) end
redis.call('EXPIRE', C, tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[1], 'D')
return {1, i[1], i[2], i[3], i[4], i[5]}
