-- info: KEYS c m l. Reply {0} no such channel | {1, messages, requested,
-- subscribers, time, tag}.
local now, nowms = clock()
if not exists() then return {0} end
local i = info(now, nowms)
return {1, i[1], i[2], i[3], i[4], i[5]}
