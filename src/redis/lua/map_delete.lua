-- map_delete: deletes an entry, unconditionally or if it holds a value.
-- KEYS[1] map hash  KEYS[2] entry TTL zset  KEYS[3] map revisions hash
-- ARGV[1] map  ARGV[2] key  ARGV[3] watch channel
-- ARGV[4] mode: erase | cad  ARGV[5] expected value (cad)
-- Reply: 1 deleted; 0 absent or different; -1 stored entry malformed.
local now = now_ms()
local map, key = ARGV[1], ARGV[2]
local cur = live_entry(KEYS[1], KEYS[2], KEYS[3], map, key, ARGV[3], now)
if not cur then return 0 end
if ARGV[4] == 'cad' then
  local v, value = split_entry(cur)
  if not v then return -1 end
  if value ~= ARGV[5] then return 0 end
end
redis.call('HDEL', KEYS[1], key)
redis.call('ZREM', KEYS[2], map .. '\n' .. key)
watch_event(ARGV[3], 'D', redis.call('HINCRBY', KEYS[3], map, 1), key)
return 1
