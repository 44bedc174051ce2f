-- leave: ends a session's membership, drops its node views and owned
-- counter contributions. The session itself stays alive.
-- KEYS[1] members  KEYS[2] member_session  KEYS[3] session_member
-- KEYS[4] node_index (set of node ids)  KEYS[5] owned_index (set of counters)
-- KEYS[6] views generation
-- ARGV[1] key prefix  ARGV[2] session id  ARGV[3] membership event channel
-- Reply: 1 if the session was a member, else 0.
local prefix, sid = ARGV[1], ARGV[2]
redis.call('INCR', KEYS[6])
for _, node in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local h = prefix .. 'node:' .. node
  redis.call('HDEL', h, sid)
  if redis.call('EXISTS', h) == 0 then redis.call('SREM', KEYS[4], node) end
end
for _, name in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local h = prefix .. 'owned:' .. name
  redis.call('HDEL', h, sid)
  if redis.call('EXISTS', h) == 0 then redis.call('SREM', KEYS[5], name) end
end
local id = redis.call('HGET', KEYS[3], sid)
if not id then return 0 end
redis.call('HDEL', KEYS[3], sid)
if redis.call('HGET', KEYS[2], id) == sid then
  local record = redis.call('HGET', KEYS[1], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  if record then redis.call('PUBLISH', ARGV[3], 'L\n' .. record) end
end
return 1
