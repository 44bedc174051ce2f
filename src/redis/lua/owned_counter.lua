-- owned_counter: adds to this session's contribution (unless ARGV[3] is
-- '') and returns the sum over live sessions.
-- KEYS[1] counter hash (sid -> contribution)  KEYS[2] owned_index  KEYS[3] sessions
-- ARGV[1] session id  ARGV[2] counter name  ARGV[3] delta, or '' to only read
-- Reply: the sum (exact up to 2^53).
local now = now_ms()
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[2])
end
local h = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #h, 2 do
  if alive(KEYS[3], h[i], now) then sum = sum + (tonumber(h[i + 1]) or 0) end
end
return sum
