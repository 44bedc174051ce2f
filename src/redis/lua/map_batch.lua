-- map_batch: applies several claim/put/cas/cad/erase operations to one map,
-- in order, as one step (Coordinator::apply).
-- KEYS[1] map hash  KEYS[2] entry TTL zset  KEYS[3] map revisions hash
-- ARGV[1] map  ARGV[2] watch channel
-- then 5 per operation: type (c claim, p put, s cas, d cad, e erase),
-- key, value, expected value, TTL ms.
-- Reply: {-1, i} when operation i would read a malformed entry (nothing
-- applied); else 2 per operation: 1 applied / 0 not, and the entry now
-- stored as "<version>:<value>" (claim, put, applied cas) or "".
-- Every change (and every expiry it finds) is announced in ONE message on
-- the watch channel: "B\n" then per change
-- "<S|D|E>\n<version>\n<key length>\n<value length>\n<key><value>".
-- Two Redis calls per operation at most (the TTL zset is read only when
-- the namespace has entries with a TTL): a batch is for speed.
local now = now_ms()
local h, ttlz, rev = KEYS[1], KEYS[2], KEYS[3]
local map, channel = ARGV[1], ARGV[2]
local n = (#ARGV - 2) / 5
for i = 0, n - 1 do
  local t = ARGV[3 + i * 5]
  if t == 'c' or t == 's' or t == 'd' then
    local s = redis.call('HGET', h, ARGV[4 + i * 5])
    if s and not split_entry(s) then return {-1, i} end
  end
end
local any_ttl = redis.call('ZCARD', ttlz) > 0
local version = tonumber(redis.call('HGET', rev, map) or '0')
local first = version
local events = {}
local function announce(kind, key, value)
  version = version + 1
  events[#events + 1] = kind .. '\n' .. int(version) .. '\n' .. int(#key) .. '\n' ..
                        int(#value) .. '\n' .. key .. value
  return version
end
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 5
  local t, key, value, expected = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local ttl = tonumber(ARGV[b + 4])
  local member = map .. '\n' .. key
  local had_ttl = false
  if any_ttl then
    local exp = redis.call('ZSCORE', ttlz, member)
    if exp and tonumber(exp) <= now then
      redis.call('ZREM', ttlz, member)
      if redis.call('HDEL', h, key) == 1 then announce('E', key, '') end
    elseif exp then
      had_ttl = true
    end
  end
  local cur = nil
  if t == 'c' or t == 's' or t == 'd' then
    cur = redis.call('HGET', h, key) or nil
  end
  local ok = false
  local stored = ''
  if t == 'c' then
    ok = cur == nil
    if not ok then stored = cur end
  elseif t == 'p' then
    ok = true
  elseif t == 's' or t == 'd' then
    if cur then
      local _, v = split_entry(cur)
      ok = v == expected
    end
  end
  if t == 'e' or (ok and t == 'd') then
    ok = redis.call('HDEL', h, key) == 1
    if ok then
      if had_ttl then redis.call('ZREM', ttlz, member) end
      announce('D', key, '')
    end
  elseif ok then
    local v = announce('S', key, value)
    stored = int(v) .. ':' .. value
    redis.call('HSET', h, key, stored)
    if ttl > 0 then
      redis.call('ZADD', ttlz, now + ttl, member)
    elseif had_ttl then
      redis.call('ZREM', ttlz, member)
    end
  end
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = stored
end
if version ~= first then
  redis.call('HSET', rev, map, int(version))
  publish(channel, 'B\n' .. table.concat(events))
end
return out
