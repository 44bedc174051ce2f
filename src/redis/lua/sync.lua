-- sync: makes Redis hold exactly what this session's owner holds — its
-- record — and gives the session a new sync epoch, in one atomic step. Run
-- by the session after any fault that may have made the two differ: a
-- write whose reply was lost, the session expiring and being swept, Redis
-- losing its data. Every write to session-bound state carries the epoch and
-- is refused if it is not the session's, so a write sent before this one
-- (a timed-out acquire still on its way, say) can no longer land after it.
-- KEYS[1] sessions  KEYS[2] epochs  KEYS[3] node_index  KEYS[4] owned_index
-- KEYS[5] views generation  KEYS[6] members  KEYS[7] member_session
-- KEYS[8] session_member  KEYS[9] this session's slotsess hash
-- ARGV[1] key prefix  ARGV[2] session id  ARGV[3] new epoch
-- ARGV[4] the instance id the session is a member as ('' if none)
-- ARGV[5] membership event channel
-- ARGV[6] number of node views V, then V pairs (node id, encoded view)
-- then a number of owned contributions O and O pairs (name, value)
-- then a number of slot holdings S and S triples (pool, target, count)
-- Reply: {-1} if the session is not alive (heartbeat first), else
-- {1, memberships dropped, views changed, contributions changed, slots
-- changed (taken again or freed)}; in a cluster maybe {'fleet:keys', ...}
-- (see common.lua).
local now = now_ms()
local prefix, sid = ARGV[1], ARGV[2]
if strict_keys then
  want_indexed(KEYS[3], prefix, 'node:')
  want_indexed(KEYS[4], prefix, 'owned:')
  want_pools(KEYS[9], prefix)
  local j = 6
  for _, kind in ipairs({'node:', 'owned:'}) do
    local count = tonumber(ARGV[j])
    for k = 1, count do want_key(prefix .. kind .. ARGV[j + 2 * k - 1]) end
    j = j + 1 + 2 * count
  end
  local count = tonumber(ARGV[j])
  for k = 1, count do want_key(prefix .. 'slots:' .. ARGV[j + 3 * k - 2]) end
  local m = missing_keys()
  if m then return m end
end
if not alive(KEYS[1], sid, now) then return {-1} end
redis.call('HSET', KEYS[2], sid, ARGV[3])

-- A membership the record does not have (a join whose reply was lost, a
-- leave that did not get through) ends here.
local dropped = 0
local id = redis.call('HGET', KEYS[8], sid)
if id and id ~= ARGV[4] then
  drop_member(KEYS[6], KEYS[7], KEYS[8], sid, ARGV[5], 'L')
  dropped = 1
end

local i = 6
-- Node views and owned contributions: this session's field in each hash
-- prefix .. kind .. name is the record's value, or absent.
local function reconcile(index, kind)
  local want = {}
  local count = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, count do
    want[ARGV[i]] = ARGV[i + 1]
    i = i + 2
  end
  local changed = 0
  for _, name in ipairs(redis.call('SMEMBERS', index)) do
    if want[name] == nil then
      local h = prefix .. kind .. name
      changed = changed + redis.call('HDEL', h, sid)
      if redis.call('EXISTS', h) == 0 then redis.call('SREM', index, name) end
    end
  end
  for name, value in pairs(want) do
    local h = prefix .. kind .. name
    if redis.call('HGET', h, sid) ~= value then
      redis.call('HSET', h, sid, value)
      redis.call('SADD', index, name)
      changed = changed + 1
    end
  end
  return changed
end
local views = reconcile(KEYS[3], 'node:')
if views > 0 then redis.call('INCR', KEYS[5]) end
local owned = reconcile(KEYS[4], 'owned:')

-- Slots: the session's slotsess hash becomes the record, and each pool's
-- counts move by the difference.
local sk = prefix .. 'slotsess:' .. sid
local want = {}
local count = tonumber(ARGV[i])
i = i + 1
for _ = 1, count do
  want[slot_field(ARGV[i], ARGV[i + 1])] = {ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])}
  i = i + 3
end
local slots = 0
local held = redis.call('HGETALL', sk)
local have = {}
for k = 1, #held, 2 do
  local f, n = held[k], tonumber(held[k + 1]) or 0
  have[f] = n
  if want[f] == nil then
    local pool, target = split_slot_field(f)
    if pool then add_slots(prefix, pool, target, -n) end
    redis.call('HDEL', sk, f)
    slots = slots + math.abs(n)
  end
end
for f, w in pairs(want) do
  local d = w[3] - (have[f] or 0)
  if d ~= 0 then
    add_slots(prefix, w[1], w[2], d)
    redis.call('HSET', sk, f, int(w[3]))
    slots = slots + math.abs(d)
  end
end
return {1, dropped, views, owned, slots}
