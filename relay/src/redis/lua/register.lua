-- register: KEYS c m l; ARGV worker mode n min_seq heartbeat_ms touched.
-- mode 'a': add n (negative when listeners left) to this worker's count;
-- 's': set it to n (heartbeat). Renews the registration for 3 heartbeats
-- and raises the channel's listener order to at least min_seq; touched
-- '1': listeners asked since the last call ("last requested"). A channel
-- that only listeners kept is freed when the last one leaves.
-- Reply {1, inc} | {0, ''} when the channel is gone (or was freed).
local now, nowms, raw = clock()
local w, mode, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local minseq = tonumber(ARGV[4])
local ttl = 3 * tonumber(ARGV[5])
if not exists() then
  if mode == 'a' or n <= 0 then return {0, ''} end
  -- Deleted: its announcement is on its way to this worker.
  if redis.call('HEXISTS', C, 'dead') == 1 then return {0, ''} end
  create(now, raw)
end
if ARGV[6] == '1' then redis.call('HSET', C, 'req', now) end
if mode == 's' then
  set_count(w, n, nowms + ttl)
else
  set_count(w, count_of(w, nowms) + n, nowms + ttl)
end
local seq = tonumber(redis.call('HGET', C, 'seq') or '0')
if seq < minseq then redis.call('HSET', C, 'seq', minseq) end
if live(nowms) == 0 and redis.call('HGET', C, 'sender') ~= '1'
    and redis.call('EXISTS', M) == 0 then
  redis.call('DEL', C, L)
  return {0, ''}
end
keep_listeners(ttl)
keep(ttl)
return {1, redis.call('HGET', C, 'inc')}
