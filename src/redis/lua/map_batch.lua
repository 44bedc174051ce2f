-- map_batch: applies several claim/put/cas/cad/erase operations to one map,
-- in order, as one step (Coordinator::apply).
-- KEYS[1] map hash  KEYS[2] entry TTL zset  KEYS[3] map revisions hash
-- ARGV[1] map  ARGV[2] watch channel
-- then 5 per operation: type (c claim, p put, s cas, d cad, e erase),
-- key, value, expected value, TTL ms.
-- Reply: {-1, i} when operation i would read a malformed entry (nothing
-- applied); else 2 per operation: 1 applied / 0 not, and the entry now
-- stored as "<version>:<value>" (claim, put, applied cas) or "".
local now = now_ms()
local map, channel = ARGV[1], ARGV[2]
local n = (#ARGV - 2) / 5
for i = 0, n - 1 do
  local t = ARGV[3 + i * 5]
  if t == 'c' or t == 's' or t == 'd' then
    local s = redis.call('HGET', KEYS[1], ARGV[4 + i * 5])
    if s and not split_entry(s) then return {-1, i} end
  end
end
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 5
  local t, key, value, expected = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local ttl = tonumber(ARGV[b + 4])
  local cur = live_entry(KEYS[1], KEYS[2], KEYS[3], map, key, channel, now)
  local ok = false
  if t == 'c' then
    ok = not cur
  elseif t == 'p' or t == 'e' then
    ok = t == 'p' or cur ~= nil
  elseif cur then
    local _, v = split_entry(cur)
    ok = v == expected
  end
  local stored = ''
  if ok and (t == 'd' or t == 'e') then
    redis.call('HDEL', KEYS[1], key)
    redis.call('ZREM', KEYS[2], map .. '\n' .. key)
    watch_event(channel, 'D', redis.call('HINCRBY', KEYS[3], map, 1), key)
  elseif ok then
    local v = write_entry(KEYS[1], KEYS[2], KEYS[3], map, key, value, ttl, channel, now)
    stored = int(v) .. ':' .. value
  elseif t == 'c' then
    stored = cur
  end
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = stored
end
return out
