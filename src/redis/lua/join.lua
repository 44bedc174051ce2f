-- join: makes a session the member for an instance id (also a heartbeat).
-- KEYS[1] sessions  KEYS[2] heartbeats  KEYS[3] members (id -> record)
-- KEYS[4] member_session (id -> sid)  KEYS[5] session_member (sid -> id)
-- ARGV[1] session id  ARGV[2] instance id  ARGV[3] member record
-- ARGV[4] session TTL ms  ARGV[5] membership event channel  KEYS[6] views generation
-- Reply: {1} joined, {0} info updated, {-1} id held by another live
-- session, {-2, id} this session is already member under another id.
local now = now_ms()
local sid, id = ARGV[1], ARGV[2]
local mine = redis.call('HGET', KEYS[5], sid)
if mine and mine ~= id then return {-2, mine} end
local holder = redis.call('HGET', KEYS[4], id)
if holder and holder ~= sid then
  if alive(KEYS[1], holder, now) then return {-1} end
  -- The holder died and was not swept yet: announce its expiry, take over.
  local old = redis.call('HGET', KEYS[3], id)
  redis.call('HDEL', KEYS[5], holder)
  if old then publish(ARGV[5], 'E\n' .. old) end
end
if not alive(KEYS[1], sid, now) then redis.call('INCR', KEYS[6]) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), sid)
redis.call('HSET', KEYS[2], sid, now)
redis.call('HSET', KEYS[3], id, ARGV[3])
redis.call('HSET', KEYS[4], id, sid)
redis.call('HSET', KEYS[5], sid, id)
if mine then return {0} end
publish(ARGV[5], 'J\n' .. ARGV[3])
return {1}
