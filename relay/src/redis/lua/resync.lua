-- resync (after a reconnect): KEYS c m l; ARGV worker n min_seq
-- heartbeat_ms since tag inc.
-- Sets this worker's count to n (absolutely: a Redis that lost its data
-- gets it back), raises the listener order to min_seq, and returns what
-- the worker's held listeners may have missed. inc: the incarnation the
-- worker knew ('' none).
-- Reply {2} deleted since | {0} no channel (and n = 0) |
-- {1, inc, sender, newest, record...} stored messages after the cursor.
local now, nowms, raw = clock()
local w, n = ARGV[1], tonumber(ARGV[2])
local minseq = tonumber(ARGV[3])
local ttl = 3 * tonumber(ARGV[4])
local since, tag = tonumber(ARGV[5]), tonumber(ARGV[6])
local known = ARGV[7]
local had = exists()
if known ~= '' then
  if not had then
    if redis.call('HGET', C, 'dead') == known then return {2} end
  elseif redis.call('HGET', C, 'inc') ~= known
      and redis.call('HGET', C, 'prev') == known then
    return {2}
  end
end
if not had then
  if n <= 0 then return {0} end
  create(now, raw)
end
set_count(w, n, nowms + ttl)
local seq = tonumber(redis.call('HGET', C, 'seq') or '0')
if seq < minseq then redis.call('HSET', C, 'seq', minseq) end
keep_listeners(ttl)
keep(ttl)
local f = redis.call('HMGET', C, 'inc', 'sender', 'newest')
local sender = 0
if f[2] == '1' then sender = 1 end
local out = {1, f[1], sender, tonumber(f[3] or '0')}
for _, e in ipairs(stored(now)) do
  if admits(e[1], e[2], since, tag) then
    local r = redis.call('GET', msgkey(e[1], e[2]))
    if r then out[#out + 1] = r end
  end
end
return out
