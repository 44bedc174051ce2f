-- sweep: removes what expired and announces it. Every session runs it once
-- per heartbeat; each expiry is processed by exactly one of them, because
-- the script is atomic and removes what it announces.
-- KEYS[1] sessions  KEYS[2] heartbeats  KEYS[3] members  KEYS[4] member_session
-- KEYS[5] session_member  KEYS[6] node_index  KEYS[7] owned_index
-- KEYS[8] leases zset  KEYS[9] entry TTL zset  KEYS[10] map revisions hash
-- KEYS[11] views generation  KEYS[12] epochs (sid -> sync epoch)
-- ARGV[1] key prefix  ARGV[2] membership event channel  ARGV[3] batch limit
-- Reply: {sessions expired, leases expired, entries expired}, or in a
-- cluster {'fleet:keys', ...} (see common.lua).
local now = now_ms()
local prefix, limit = ARGV[1], tonumber(ARGV[3])

local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local leases = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, limit)
local entries = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', now, 'LIMIT', 0, limit)
-- Cluster: the keys this depends on, in two rounds (the dead sessions'
-- slot holdings name the pools).
if strict_keys then
  for _, sid in ipairs(dead) do want_key(prefix .. 'slotsess:' .. sid) end
  if #dead > 0 then
    want_indexed(KEYS[6], prefix, 'node:')
    want_indexed(KEYS[7], prefix, 'owned:')
  end
  for _, member in ipairs(leases) do want_key(prefix .. 'lock:' .. member) end
  for _, member in ipairs(entries) do
    local nl = string.find(member, '\n', 1, true)
    if nl then want_key(prefix .. 'map:' .. string.sub(member, 1, nl - 1)) end
  end
  local m = missing_keys()
  if m then return m end
  for _, sid in ipairs(dead) do want_pools(prefix .. 'slotsess:' .. sid, prefix) end
  m = missing_keys()
  if m then return m end
end

if #dead > 0 then
  redis.call('INCR', KEYS[11])
  for _, sid in ipairs(dead) do
    drop_member(KEYS[3], KEYS[4], KEYS[5], sid, ARGV[2], 'E')
    redis.call('HDEL', KEYS[2], sid)
    redis.call('HDEL', KEYS[12], sid)
    redis.call('ZREM', KEYS[1], sid)
    free_slots(prefix, sid)
  end
  drop_session_fields(KEYS[6], prefix, 'node:', dead)
  drop_session_fields(KEYS[7], prefix, 'owned:', dead)
end

for _, member in ipairs(leases) do
  local key = prefix .. 'lock:' .. member
  local left = redis.call('PTTL', key)
  if left > 0 then
    redis.call('ZADD', KEYS[8], now + left, member)  -- renewed meanwhile
  else
    redis.call('ZREM', KEYS[8], member)
    publish(prefix .. 'lockev:' .. member, 'x')
    if string.sub(member, 1, 2) == 'E:' then
      publish(prefix .. 'leader:' .. string.sub(member, 3), '')
    end
  end
end

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
