-- slot_acquire: chooses a target by SlotRequest's rule (the same as
-- internal/slots.cpp choose_slot) and takes one slot on it.
-- KEYS[1] slots hash of the pool  KEYS[2] this session's slotsess hash
-- KEYS[3] sessions
-- ARGV[1] session id  ARGV[2] pool  ARGV[3] load weight  ARGV[4] tier load
-- limit  ARGV[5] sample (0: all)  ARGV[6..] per candidate: target,
-- capacity, score, tier
-- Reply: -1 if the session is not alive (swept: it must heartbeat first),
-- 0 if no candidate has room, else {candidate index (1-based), used after}.
if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then return -1 end
local weight, limit, sample = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = (#ARGV - 5) / 4
local targets = {}
for i = 1, n do targets[i] = ARGV[2 + 4 * i] end
local used = redis.call('HMGET', KEYS[1], unpack(targets))

local el_index, el_load, el_used = {}, {}, {}
for i = 1, n do
  local u = 0
  if used[i] then
    u = tonumber(used[i])
    if not u then
      return redis.error_reply('ERR slot count of ' .. targets[i] .. ' is not an integer')
    end
  end
  local cap = tonumber(ARGV[3 + 4 * i])
  if u < cap then
    local k = #el_index + 1
    el_index[k], el_load[k], el_used[k] = i, u / cap, u
    if sample > 0 and k == sample then break end
  end
end
if #el_index == 0 then return 0 end

local tier = nil
for k = 1, #el_index do
  local t = tonumber(ARGV[5 + 4 * el_index[k]])
  if el_load[k] < limit and (tier == nil or t < tier) then tier = t end
end
local best, best_score = nil, 0
for k = 1, #el_index do
  local i = el_index[k]
  if tier == nil or (tonumber(ARGV[5 + 4 * i]) == tier and el_load[k] < limit) then
    local score = tonumber(ARGV[4 + 4 * i]) + weight * el_load[k]
    if best == nil or score < best_score then best, best_score = k, score end
  end
end

local i = el_index[best]
local after = el_used[best] + 1
redis.call('HSET', KEYS[1], targets[i], int(after))
redis.call('HINCRBY', KEYS[2], slot_field(ARGV[2], targets[i]), 1)
return {i, after}
