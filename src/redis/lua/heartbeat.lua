-- heartbeat: keeps a session alive for another TTL, and tells it whether
-- Redis still holds the data it knew (the namespace's incarnation).
-- KEYS[1] sessions (zset sid -> expiry ms)   KEYS[2] heartbeats (hash sid -> ms)
-- KEYS[3] views generation: bumped when a session comes back to life, as
-- its node views count again   KEYS[4] incarnation (hash: id, lost_at ms)
-- ARGV[1] session id   ARGV[2] session TTL ms
-- ARGV[3] the incarnation id this session knows ('' if none yet)
-- ARGV[4] a fresh id, stored if Redis has none (it lost its data, or this
-- is a new namespace)   ARGV[5] data-loss grace ms
-- Reply: {was alive, incarnation id, grace ms left}. was alive: 1 if the
-- session was alive before this call, 0 if it was absent or had expired
-- (others have seen it die: its session-bound state may be gone). Grace
-- left: how much longer no slot may be granted after a data loss someone
-- noticed (lost_at), so that every session can take back what it holds.
local now = now_ms()
local id = redis.call('HGET', KEYS[4], 'id')
if not id then
  id = ARGV[4]
  redis.call('HSET', KEYS[4], 'id', id)
end
if ARGV[3] ~= '' and ARGV[3] ~= id then
  redis.call('HSETNX', KEYS[4], 'lost_at', now)
end
local grace = 0
local lost_at = tonumber(redis.call('HGET', KEYS[4], 'lost_at'))
if lost_at then grace = math.max(0, lost_at + tonumber(ARGV[5]) - now) end
local was = alive(KEYS[1], ARGV[1], now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now)
if not was then redis.call('INCR', KEYS[3]) end
return {was and 1 or 0, id, grace}
