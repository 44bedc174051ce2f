-- standalone (common.lua is not prepended: this is the router's hot path)
-- slot_acquire: one or more decisions on the same candidates, in order, each
-- choosing a target by SlotRequest's rule (the same single pass as
-- internal/slots.cpp choose_slot) and taking one slot on it. Several
-- decisions in one call share the reads and the writes: the async path sends
-- the identical requests queued meanwhile together (redis/slot_lane.cpp).
-- KEYS[1] slots hash of the pool  KEYS[2] this session's slotsess hash
-- KEYS[3] epochs (sid -> sync epoch)
-- ARGV[1] session id  ARGV[2] the session's sync epoch (see sync.lua)
-- ARGV[3] the slotsess field prefix of the pool ("<#pool>:<pool>",
-- common.lua's slot_field)  ARGV[4] little-endian doubles: load weight,
-- tier load limit, sample (0: all), then per candidate capacity, score,
-- tier  ARGV[5] their struct format  ARGV[6] one little-endian double per
-- decision: its rotate  ARGV[7..] targets (codec.cpp encode_slot_numbers)
-- Reply: -1 if the epoch is not the session's (the session expired and was
-- swept, Redis lost its data, or a sync replaced the epoch: the session
-- must sync, and this write must not land), else {candidate index
-- (1-based), used after} per granted decision, in order; the decisions
-- after the last granted one found no room.
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return -1 end
local v = {struct.unpack(ARGV[5], ARGV[4])}
local weight, limit, sample = v[1], v[2], v[3]
local decisions = #ARGV[6] / 8
local rotates = {struct.unpack(decisions == 1 and '<d' or '<' .. string.rep('d', decisions),
                               ARGV[6])}
local n = #ARGV - 6
local got = redis.call('HMGET', KEYS[1], unpack(ARGV, 7, 6 + n))
local used = {}  -- parsed when first looked at

local out, taken = {}, {}
for d = 1, decisions do
  local best, best_s                 -- the best eligible candidate
  local tb, tb_s, tb_tier            -- the best in the lowest tier under the limit
  local seen = 0
  local i = rotates[d] % n
  for _ = 1, n do
    i = i + 1
    if i > n then i = 1 end
    local u = used[i]
    if u == nil then
      u = got[i]
      if u then
        u = tonumber(u)
        if not u then
          return redis.error_reply('ERR slot count of ' .. ARGV[6 + i] ..
                                   ' is not an integer')
        end
      else
        u = 0
      end
      used[i] = u
    end
    local c = v[3 * i + 1]
    if u < c then
      local load = u / c
      local s = v[3 * i + 2] + weight * load
      if best == nil or s < best_s then best, best_s = i, s end
      if load < limit then
        local t = v[3 * i + 3]
        if tb == nil or t < tb_tier or (t == tb_tier and s < tb_s) then
          tb, tb_s, tb_tier = i, s, t
        end
      end
      seen = seen + 1
      if seen == sample then break end
    end
  end
  if best == nil then break end  -- no room: nor for the decisions after it
  if tb ~= nil then best = tb end
  used[best] = used[best] + 1
  taken[best] = (taken[best] or 0) + 1
  out[#out + 1] = best
  out[#out + 1] = used[best]
end

-- Written once per target taken, in candidate order.
local counts = {}
for i = 1, n do
  local k = taken[i]
  if k then
    counts[#counts + 1] = ARGV[6 + i]
    counts[#counts + 1] = string.format('%d', used[i])
    redis.call('HINCRBY', KEYS[2], ARGV[3] .. ARGV[6 + i], k)
  end
end
if #counts > 0 then redis.call('HSET', KEYS[1], unpack(counts)) end
return out
