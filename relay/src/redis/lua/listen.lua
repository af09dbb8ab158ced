-- listen: KEYS c m l; ARGV worker since tag hold rule authorized_only
-- max_subscribers heartbeat_ms pubsub all.
-- since/tag: '' when absent; hold: '1' to hold when nothing is there;
-- rule: 'l' last, 'f' first, 'b' broadcast; all: '1' for a stream (every
-- stored message after the cursor, then held).
-- Reply {0} not modified | {1, record} a message | {2} forbidden |
-- {3} conflict (first) | {4, seq, inc, t, g, record...} held (t g: the
-- channel's last message id, -1 -1 when none).
local now, nowms, raw = clock()
local w = ARGV[1]
local since, tag = tonumber(ARGV[2]), tonumber(ARGV[3])
local hold = ARGV[4] == '1'
local rule = ARGV[5]
local authorized = ARGV[6] == '1'
local maxsubs = tonumber(ARGV[7])
local ttl = 3 * tonumber(ARGV[8])
local all = ARGV[10] == '1'

local had = exists()
local found = {}
if not had then
  if authorized then return {2} end
  if not hold then return {0} end
else
  redis.call('HSET', C, 'req', now)
  if authorized and redis.call('HGET', C, 'sender') ~= '1' then return {2} end
  for _, e in ipairs(stored(now)) do
    if admits(e[1], e[2], since, tag) then
      local r = redis.call('GET', msgkey(e[1], e[2]))
      if r then
        if not all then return {1, r} end
        found[#found + 1] = r
      else
        redis.call('LREM', M, 1, e[4])
      end
    end
  end
  if not hold then return {0} end
end

local held = live(nowms)
if rule == 'f' and held > 0 then return {3} end
local evict = rule == 'l' and held > 0
local after = held + 1
if evict then after = 1 end
if maxsubs > 0 and after > maxsubs then return {2} end
if not had then
  create(now, raw)
  redis.call('HSET', C, 'req', now)
end
local seq = redis.call('HINCRBY', C, 'seq', 1)
if rule == 'l' then redis.call('HSET', C, 'newest', seq) end
set_count(w, count_of(w, nowms) + 1, nowms + ttl)
keep_listeners(ttl)
if evict then redis.call('PUBLISH', ARGV[9], 'C' .. seq) end
keep(ttl)
local last = redis.call('HMGET', C, 't', 'g')
local out = {4, seq, redis.call('HGET', C, 'inc'), tonumber(last[1] or '-1'),
  tonumber(last[2] or '-1')}
for i = 1, #found do out[#out + 1] = found[i] end
return out
