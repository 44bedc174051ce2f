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
-- Expire this map's due entries first (announced, as reads do), so the rest
-- of the hash is live without a TTL lookup per entry.
local tag = map .. '\n'
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  if string.sub(member, 1, #tag) == tag then
    live_entry(KEYS[1], KEYS[2], KEYS[3], map, string.sub(member, #tag + 1), ARGV[2], now)
  end
end
local out = {}
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if #prefix == 0 or string.sub(h[i], 1, #prefix) == prefix then
    out[#out + 1] = h[i]
    out[#out + 1] = h[i + 1]
  end
end
return out
