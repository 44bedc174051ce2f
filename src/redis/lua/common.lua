-- common.lua: prepended to every fleet script; defines shared helpers only.
-- Liveness and TTLs use Redis server time (TIME), never a client clock.

-- Publishes on one of the namespace's channels: sharded pub/sub in a
-- cluster (the channel names carry the namespace's hash tag, so the
-- message stays on the shard of its slot), plain PUBLISH otherwise.
local function publish(channel, message)
  return redis.call(fleet_cluster and 'SPUBLISH' or 'PUBLISH', channel, message)
end

-- release/renew of a grant that is not the current one: 0 when a grant of
-- `member` did have `fence` (it expired or was released), {-1, last fence
-- or ''} when none can have (fences only grow: one above the last was
-- never granted; '' when no grant of `member` is recorded, which after a
-- data loss the client does not take as "never").
local function not_granted(fences, member, fence)
  local last = redis.call('HGET', fences, member)
  if last and tonumber(fence) <= tonumber(last) then return 0 end
  return {-1, last or ''}
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal strings (tostring() would print 1.7e+12).
local function int(n)
  return string.format('%d', n)
end

-- Redis Cluster: a script may touch only keys it was given in KEYS, or a
-- slot migration can make it read a key that has not arrived yet, or stop
-- it half-way ("non local key"). A script whose keys depend on what it
-- reads first names each with want_key() before it writes anything, then
-- asks missing_keys(): if some were not given, it returns
-- {'fleet:keys', key...} instead of running, and the client (Scripts::run)
-- calls it again with them. Only in a cluster (a single server needs no
-- declaration): fleet_cluster is the first line of every script's body
-- (Scripts, src/redis/scripts.cpp).
local strict_keys = fleet_cluster
local given_keys, wanted_keys = nil, {}
local function want_key(k)
  if not strict_keys then return end
  if given_keys == nil then
    given_keys = {}
    for _, x in ipairs(KEYS) do given_keys[x] = true end
  end
  if not given_keys[k] then
    given_keys[k] = true
    wanted_keys[#wanted_keys + 1] = k
  end
end
local function missing_keys()
  if #wanted_keys == 0 then return nil end
  local r = {'fleet:keys'}
  for _, k in ipairs(wanted_keys) do r[#r + 1] = k end
  return r
end
-- want_key() for prefix .. kind .. name, for every name in the set `index`.
local function want_indexed(index, prefix, kind)
  if not strict_keys then return end
  for _, name in ipairs(redis.call('SMEMBERS', index)) do want_key(prefix .. kind .. name) end
end
-- want_key() for the slots hash of every pool in slotsess hash `h` (which
-- must have been given).
local function want_pools(h, prefix)
  if not strict_keys then return end
  local held = redis.call('HGETALL', h)
  for i = 1, #held, 2 do
    local c = string.find(held[i], ':', 1, true)
    local len = c and tonumber(string.sub(held[i], 1, c - 1))
    if len and len <= #held[i] - c then
      want_key(prefix .. 'slots:' .. string.sub(held[i], c + 1, c + len))
    end
  end
end

local function alive(sessions, sid, now)
  local exp = redis.call('ZSCORE', sessions, sid)
  return exp ~= false and tonumber(exp) > now
end

-- Map entries are stored as "<version>:<value>".
local function split_entry(s)
  local c = string.find(s, ':', 1, true)
  if not c then return nil end
  local v = tonumber(string.sub(s, 1, c - 1))
  if not v then return nil end
  return v, string.sub(s, c + 1)
end

-- Watch event payload: "<S|D|E>\n<version>\n<key length>\n<key><value>".
local function watch_event(channel, kind, version, key, value)
  publish(channel,
    kind .. '\n' .. int(version) .. '\n' .. int(#key) .. '\n' .. key .. (value or ''))
end

-- The stored entry for key, or nil; an entry whose TTL has passed is
-- deleted here (and announced) so that no read ever sees it.
local function live_entry(h, ttlz, rev, map, key, channel, now)
  local member = map .. '\n' .. key
  local exp = redis.call('ZSCORE', ttlz, member)
  if exp and tonumber(exp) <= now then
    redis.call('ZREM', ttlz, member)
    if redis.call('HDEL', h, key) == 1 then
      watch_event(channel, 'E', redis.call('HINCRBY', rev, map, 1), key)
    end
    return nil
  end
  local s = redis.call('HGET', h, key)
  if s == false then return nil end
  return s
end

local function write_entry(h, ttlz, rev, map, key, value, ttl, channel, now)
  local version = redis.call('HINCRBY', rev, map, 1)
  redis.call('HSET', h, key, int(version) .. ':' .. value)
  local member = map .. '\n' .. key
  if ttl > 0 then
    redis.call('ZADD', ttlz, now + ttl, member)
  else
    redis.call('ZREM', ttlz, member)
  end
  watch_event(channel, 'S', version, key, value)
  return version
end

-- Ends a session's membership, if it has one: removes the member record
-- and announces it on `channel` as `kind` ('L' left, 'E' expired).
-- Returns whether the session was a member.
local function drop_member(members, member_session, session_member, sid, channel, kind)
  local id = redis.call('HGET', session_member, sid)
  if not id then return false end
  redis.call('HDEL', session_member, sid)
  if redis.call('HGET', member_session, id) == sid then
    local record = redis.call('HGET', members, id)
    redis.call('HDEL', members, id)
    redis.call('HDEL', member_session, id)
    if record then publish(channel, kind .. '\n' .. record) end
  end
  return true
end

-- Removes the sessions' fields from each hash `prefix .. kind .. name` for
-- every name in the set `index`, and drops names whose hash is left empty
-- (node views: kind 'node:'; owned counters: kind 'owned:').
local function drop_session_fields(index, prefix, kind, sids)
  for _, name in ipairs(redis.call('SMEMBERS', index)) do
    local h = prefix .. kind .. name
    redis.call('HDEL', h, unpack(sids))
    if redis.call('EXISTS', h) == 0 then redis.call('SREM', index, name) end
  end
end

-- Slot pools. The hash prefix .. 'slots:' .. pool maps target -> slots in
-- use (live sessions only); prefix .. 'slotsess:' .. sid maps
-- "<#pool>:<pool><target>" -> slots that session holds. Both change together.
local function slot_field(pool, target)
  return int(#pool) .. ':' .. pool .. target
end

-- The pool and target of a slotsess field, or nil if it is not one of ours.
local function split_slot_field(f)
  local c = string.find(f, ':', 1, true)
  local len = c and tonumber(string.sub(f, 1, c - 1))
  if not len or len > #f - c then return nil end
  return string.sub(f, c + 1, c + len), string.sub(f, c + len + 1)
end

-- Adds `d` to the slots in use on a target (deleting it at 0).
local function add_slots(prefix, pool, target, d)
  local key = prefix .. 'slots:' .. pool
  local left = (tonumber(redis.call('HGET', key, target)) or 0) + d
  if left > 0 then
    redis.call('HSET', key, target, int(left))
  else
    redis.call('HDEL', key, target)
  end
end

-- Frees every slot session `sid` holds (at leave and at expiry).
local function free_slots(prefix, sid)
  local h = prefix .. 'slotsess:' .. sid
  local held = redis.call('HGETALL', h)
  for i = 1, #held, 2 do
    local pool, target = split_slot_field(held[i])
    local n = tonumber(held[i + 1])
    if pool and n then add_slots(prefix, pool, target, -n) end  -- else not ours
  end
  redis.call('DEL', h)
end
