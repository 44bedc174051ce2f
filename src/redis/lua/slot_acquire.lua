-- standalone (common.lua is not prepended: this is the router's hot path)
-- slot_acquire: chooses a target by SlotRequest's rule (the same single
-- pass as internal/slots.cpp choose_slot) and takes one slot on it.
-- KEYS[1] slots hash of the pool  KEYS[2] this session's slotsess hash
-- KEYS[3] sessions
-- ARGV[1] session id  ARGV[2] pool  ARGV[3] little-endian doubles: load
-- weight, tier load limit, sample (0: all), rotate, then per candidate
-- capacity, score, tier  ARGV[4] their struct format  ARGV[5..] targets
-- (codec.cpp encode_slot_numbers)
-- Reply: -1 if the session is not alive (swept: it must heartbeat first),
-- 0 if no candidate has room, else {candidate index (1-based), used after}.
if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then return -1 end
local v = {struct.unpack(ARGV[4], ARGV[3])}
local weight, limit, sample, rotate = v[1], v[2], v[3], v[4]
local n = #ARGV - 4
local used = redis.call('HMGET', KEYS[1], unpack(ARGV, 5, 4 + n))

local best, best_s, best_u           -- the best eligible candidate
local tb, tb_s, tb_u, tb_tier        -- the best in the lowest tier under the limit
local seen = 0
for k = 0, n - 1 do
  local i = (rotate + k) % n + 1
  local u = used[i]
  if u then
    u = tonumber(u)
    if not u then
      return redis.error_reply('ERR slot count of ' .. ARGV[4 + i] .. ' is not an integer')
    end
  else
    u = 0
  end
  local cap = v[3 * i + 2]
  if u < cap then
    local load = u / cap
    local s = v[3 * i + 3] + weight * load
    if best == nil or s < best_s then best, best_s, best_u = i, s, u end
    if load < limit then
      local tier = v[3 * i + 4]
      if tb == nil or tier < tb_tier or (tier == tb_tier and s < tb_s) then
        tb, tb_s, tb_u, tb_tier = i, s, u, tier
      end
    end
    seen = seen + 1
    if seen == sample then break end
  end
end
if best == nil then return 0 end
if tb ~= nil then best, best_u = tb, tb_u end

-- The same field format as common.lua's slot_field.
local target = ARGV[4 + best]
redis.call('HSET', KEYS[1], target, string.format('%d', best_u + 1))
redis.call('HINCRBY', KEYS[2], string.format('%d', #ARGV[2]) .. ':' .. ARGV[2] .. target, 1)
return {best, best_u + 1}
