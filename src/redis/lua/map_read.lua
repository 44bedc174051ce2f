-- map_read: one entry, or every entry whose key starts with a prefix.
-- KEYS[1] map hash  KEYS[2] entry TTL zset  KEYS[3] map revisions hash
-- ARGV[1] map  ARGV[2] watch channel  ARGV[3] mode: get | scan
-- ARGV[4] key (get) or key prefix (scan)
-- Reply: get: the stored "<version>:<value>" or nil;
-- scan: flat {key, stored, key, stored, ...}, unordered.
local now = now_ms()
local map = ARGV[1]
if ARGV[3] == 'get' then
  return live_entry(KEYS[1], KEYS[2], KEYS[3], map, ARGV[4], ARGV[2], now)
end
local prefix = ARGV[4]
local out = {}
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  local key = h[i]
  if string.sub(key, 1, #prefix) == prefix then
    local cur = live_entry(KEYS[1], KEYS[2], KEYS[3], map, key, ARGV[2], now)
    if cur then
      out[#out + 1] = key
      out[#out + 1] = cur
    end
  end
end
return out
