-- push_relay: helpers shared by every script (prepended to each).
-- Every script touches the keys of one channel only: KEYS[1] `{T}:c`,
-- KEYS[2] `{T}:m`, KEYS[3] `{T}:l`, and message keys `{T}:k:<time>:<tag>`
-- (same hash tag) that it derives from KEYS[1].
if redis.replicate_commands then redis.replicate_commands() end

local C, M, L = KEYS[1], KEYS[2], KEYS[3]
local BASE = C and string.sub(C, 1, -2) .. 'k:'

-- Redis's clock: seconds, milliseconds, and a unique-ish "sec.usec".
local function clock()
  local t = redis.call('TIME')
  local s = tonumber(t[1])
  return s, s * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. '.' .. t[2]
end

local function msgkey(t, g)
  return BASE .. t .. ':' .. g
end

-- Live stored entries {time, tag, expires, raw}, oldest first; dead ones
-- (expired) are removed from the list.
local function stored(now)
  local ids = redis.call('LRANGE', M, 0, -1)
  local out = {}
  for i = 1, #ids do
    local t, g, e = string.match(ids[i], '^(%d+):(%d+):(%d+)$')
    t = tonumber(t) g = tonumber(g) e = tonumber(e)
    if t and (e == 0 or e > now) then
      out[#out + 1] = {t, g, e, ids[i]}
    else
      redis.call('LREM', M, 1, ids[i])
    end
  end
  return out
end

-- Does message (t, g) come after the cursor (since, tag)? nil = absent.
local function admits(t, g, since, tag)
  if since == nil then return true end
  if t > since then return true end
  return t == since and (tag == nil or g > tag)
end

-- Held listeners on every live server; expired registrations are removed.
local function live(nowms)
  local all = redis.call('HGETALL', L)
  local n = 0
  for i = 1, #all, 2 do
    local c, d = string.match(all[i + 1], '^(%d+):(%d+)$')
    c = tonumber(c) d = tonumber(d)
    if c and d and c > 0 and d > nowms then
      n = n + c
    else
      redis.call('HDEL', L, all[i])
    end
  end
  return n
end

-- This worker's registration: count `n` until `deadline` (ms).
local function set_count(w, n, deadline)
  if n > 0 then
    redis.call('HSET', L, w, n .. ':' .. deadline)
  else
    redis.call('HDEL', L, w)
  end
end

local function count_of(w, nowms)
  local cur = redis.call('HGET', L, w)
  if not cur then return 0 end
  local c, d = string.match(cur, '^(%d+):(%d+)$')
  if c and tonumber(d) > nowms then return tonumber(c) end
  return 0
end

local function exists()
  return redis.call('HEXISTS', C, 'created') == 1
end

-- A new incarnation of the channel; over a tombstone it remembers the
-- deleted one (`prev`) and keeps its newest id, so ids never go backwards.
local function create(now, raw)
  local dead = redis.call('HGET', C, 'dead')
  if dead then
    redis.call('HDEL', C, 'dead')
    redis.call('HSET', C, 'prev', dead)
  end
  redis.call('HSET', C, 'created', now, 'inc', raw)
end

-- The channel hash lives as long as its messages, its listeners and `ms`;
-- forever while a message that never expires is stored.
local function keep(ms)
  local mt = redis.call('PTTL', M)
  if mt == -1 then
    redis.call('PERSIST', C)
    return
  end
  local want = ms
  if mt > want then want = mt end
  local lt = redis.call('PTTL', L)
  if lt > want then want = lt end
  if want < 1000 then want = 1000 end
  local cur = redis.call('PTTL', C)
  if cur == -1 or cur < want then redis.call('PEXPIRE', C, want) end
end

local function keep_listeners(ms)
  local cur = redis.call('PTTL', L)
  if cur == -1 or (cur >= 0 and cur < ms) then redis.call('PEXPIRE', L, ms) end
end

-- A message key leaving the buffer: deleted, unless it was announced by
-- reference, then it lives `ref_ttl` more seconds for the fetches.
local function drop(key, inline_max, ref_ttl)
  if redis.call('STRLEN', key) > inline_max then
    redis.call('EXPIRE', key, ref_ttl)
  else
    redis.call('DEL', key)
  end
end

-- {messages, requested, subscribers, time, tag}; time = tag = -1 before
-- any message.
local function info(now, nowms)
  local n = #stored(now)
  local held = live(nowms)
  local f = redis.call('HMGET', C, 'req', 'created', 't', 'g')
  local since = tonumber(f[1] or f[2]) or now
  local req = now - since
  if req < 0 then req = 0 end
  local t, g = -1, -1
  if f[3] then t = tonumber(f[3]) g = tonumber(f[4]) end
  return {n, req, held, t, g}
end

