-- owned_counter: adds to this session's contribution (unless ARGV[3] is
-- '') and returns the sum over live sessions.
-- KEYS[1] counter hash (sid -> contribution)  KEYS[2] owned_index  KEYS[3] sessions
-- KEYS[4] epochs (sid -> sync epoch)
-- ARGV[1] session id  ARGV[2] counter name  ARGV[3] delta, or '' to only read
-- ARGV[4] the session's sync epoch (for an addition)
-- Reply: {1, the sum (exact up to 2^53)}, or {-1} if an addition carries an
-- epoch that is not the session's (it must sync first).
local now = now_ms()
if ARGV[3] ~= '' then
  if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[4] then return {-1} end
  redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[2])
end
local h = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #h, 2 do
  if alive(KEYS[3], h[i], now) then sum = sum + (tonumber(h[i + 1]) or 0) end
end
return {1, sum}
