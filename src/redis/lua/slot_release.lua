-- slot_release: frees one of this session's slots on a target.
-- KEYS[1] slots hash of the pool  KEYS[2] this session's slotsess hash
-- KEYS[3] epochs (sid -> sync epoch)
-- ARGV[1] pool  ARGV[2] target  ARGV[3] session id  ARGV[4] the session's
-- sync epoch (see sync.lua)
-- Reply: 1 if freed, 0 if the session held no slot there, -1 if the epoch
-- is not the session's (it must sync: this write must not land).
if redis.call('HGET', KEYS[3], ARGV[3]) ~= ARGV[4] then return -1 end
local field = slot_field(ARGV[1], ARGV[2])
local mine = tonumber(redis.call('HGET', KEYS[2], field))
if not mine or mine <= 0 then return 0 end
if mine == 1 then
  redis.call('HDEL', KEYS[2], field)
else
  redis.call('HSET', KEYS[2], field, int(mine - 1))
end
local left = tonumber(redis.call('HGET', KEYS[1], ARGV[2]))
if left and left > 1 then
  redis.call('HSET', KEYS[1], ARGV[2], int(left - 1))
else
  redis.call('HDEL', KEYS[1], ARGV[2])
end
return 1
