-- sweep: removes what expired and announces it. Every session runs it once
-- per heartbeat; each expiry is processed by exactly one of them, because
-- the script is atomic and removes what it announces.
-- KEYS[1] sessions  KEYS[2] heartbeats  KEYS[3] members  KEYS[4] member_session
-- KEYS[5] session_member  KEYS[6] node_index  KEYS[7] owned_index
-- KEYS[8] leases zset  KEYS[9] entry TTL zset  KEYS[10] map revisions hash
-- KEYS[11] views generation
-- ARGV[1] key prefix  ARGV[2] membership event channel  ARGV[3] batch limit
-- Reply: {sessions expired, leases expired, entries expired}.
local now = now_ms()
local prefix, limit = ARGV[1], tonumber(ARGV[3])

local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
if #dead > 0 then
  redis.call('INCR', KEYS[11])
  local nodes = redis.call('SMEMBERS', KEYS[6])
  local counters = redis.call('SMEMBERS', KEYS[7])
  for _, sid in ipairs(dead) do
    local id = redis.call('HGET', KEYS[5], sid)
    if id then
      redis.call('HDEL', KEYS[5], sid)
      if redis.call('HGET', KEYS[4], id) == sid then
        local record = redis.call('HGET', KEYS[3], id)
        redis.call('HDEL', KEYS[3], id)
        redis.call('HDEL', KEYS[4], id)
        if record then redis.call('PUBLISH', ARGV[2], 'E\n' .. record) end
      end
    end
    for _, node in ipairs(nodes) do
      redis.call('HDEL', prefix .. 'node:' .. node, sid)
    end
    for _, name in ipairs(counters) do
      redis.call('HDEL', prefix .. 'owned:' .. name, sid)
    end
    redis.call('HDEL', KEYS[2], sid)
    redis.call('ZREM', KEYS[1], sid)
  end
  for _, node in ipairs(nodes) do
    if redis.call('EXISTS', prefix .. 'node:' .. node) == 0 then
      redis.call('SREM', KEYS[6], node)
    end
  end
  for _, name in ipairs(counters) do
    if redis.call('EXISTS', prefix .. 'owned:' .. name) == 0 then
      redis.call('SREM', KEYS[7], name)
    end
  end
end

local leases = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(leases) do
  local key = prefix .. 'lock:' .. member
  local left = redis.call('PTTL', key)
  if left > 0 then
    redis.call('ZADD', KEYS[8], now + left, member)  -- renewed meanwhile
  else
    redis.call('ZREM', KEYS[8], member)
    redis.call('PUBLISH', prefix .. 'lockev:' .. member, 'x')
    if string.sub(member, 1, 2) == 'E:' then
      redis.call('PUBLISH', prefix .. 'leader:' .. string.sub(member, 3), '')
    end
  end
end

local entries = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(entries) do
  local nl = string.find(member, '\n', 1, true)
  redis.call('ZREM', KEYS[9], member)
  if nl then
    local map, key = string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
    if redis.call('HDEL', prefix .. 'map:' .. map, key) == 1 then
      watch_event(prefix .. 'watch:' .. map, 'E',
                  redis.call('HINCRBY', KEYS[10], map, 1), key)
    end
  end
end
return {#dead, #leases, #entries}
