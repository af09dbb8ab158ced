-- publish: KEYS c m l; ARGV content_type body marker buffer_length
-- message_timeout queue channel_timeout inline_max ref_ttl pubsub event.
-- Reply {time, tag, held, messages, requested}.
local now, nowms, raw = clock()
local ct, body = ARGV[1], ARGV[2]
local marker = tonumber(ARGV[3])
local buflen = tonumber(ARGV[4])
local timeout = tonumber(ARGV[5])
local queue = ARGV[6] == '1'
local ctimeout = tonumber(ARGV[7])
local inline_max = tonumber(ARGV[8])
local ref_ttl = tonumber(ARGV[9])

if not exists() then create(now, raw) end
local last = redis.call('HMGET', C, 't', 'g')
local t, g
if not last[1] then
  -- No id yet: not before the second after the namespace's data began.
  t, g = now, 0
  if marker + 1 > t then t = marker + 1 end
else
  local lt, lg = tonumber(last[1]), tonumber(last[2])
  if now > lt then
    t, g = now, 0
  elseif lg >= 4294967295 then
    t, g = lt + 1, 0
  else
    t, g = lt, lg + 1
  end
end

local ev = ARGV[11] or ''
local record = t .. ':' .. g .. ':' .. #ct .. ':' .. #ev .. ':' .. ct .. ev .. body
local big = #record > inline_max
local key = msgkey(t, g)
local store = queue and buflen > 0
local exp = 0
if timeout > 0 then exp = now + timeout end
if store then
  if timeout > 0 then
    redis.call('SET', key, record, 'EX', timeout)
  else
    redis.call('SET', key, record)
  end
  redis.call('RPUSH', M, t .. ':' .. g .. ':' .. exp)
elseif big then
  -- Not stored, but announced by reference: a short-lived copy.
  redis.call('SET', key, record, 'EX', ref_ttl)
end

local entries = stored(now)
local first = 1
if store and #entries > buflen then
  first = #entries - buflen + 1
  for i = 1, first - 1 do
    redis.call('LREM', M, 1, entries[i][4])
    drop(msgkey(entries[i][1], entries[i][2]), inline_max, ref_ttl)
  end
end
local forever, maxexp = false, 0
for i = first, #entries do
  local e = entries[i][3]
  if e == 0 then forever = true elseif e > maxexp then maxexp = e end
end
if #entries >= first then
  if forever then
    redis.call('PERSIST', M)
  else
    redis.call('PEXPIRE', M, (maxexp - now) * 1000)
  end
end

redis.call('HSET', C, 't', t, 'g', g, 'sender', '1')
local held = live(nowms)
local upto = tonumber(redis.call('HGET', C, 'seq') or '0') + 1
if big then
  redis.call('PUBLISH', ARGV[10], 'R' .. upto .. ':' .. t .. ':' .. g)
else
  redis.call('PUBLISH', ARGV[10], 'M' .. upto .. ':' .. record)
end
keep(ctimeout * 1000)
local f = redis.call('HMGET', C, 'req', 'created')
local req = now - (tonumber(f[1] or f[2]) or now)
if req < 0 then req = 0 end
return {t, g, held, #entries - first + 1, req}
