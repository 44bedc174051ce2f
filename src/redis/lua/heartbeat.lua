-- heartbeat: keeps a session alive for another TTL.
-- KEYS[1] sessions (zset sid -> expiry ms)   KEYS[2] heartbeats (hash sid -> ms)
-- KEYS[3] views generation: bumped when a session comes back to life, as
-- its node views count again
-- ARGV[1] session id   ARGV[2] session TTL ms
-- Reply: 1 if the session was alive before this call, 0 if it was absent or
-- had expired (others have seen it die: its owned state may be gone).
local now = now_ms()
local was = alive(KEYS[1], ARGV[1], now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now)
if was then return 1 end
redis.call('INCR', KEYS[3])
return 0
