-- map_write: claim (set if absent), put, or compare-and-set one entry.
-- KEYS[1] map hash (key -> "<version>:<value>")  KEYS[2] entry TTL zset
-- KEYS[3] map revisions hash (map -> last version)
-- ARGV[1] map  ARGV[2] key  ARGV[3] value  ARGV[4] TTL ms (0: none)
-- ARGV[5] watch channel  ARGV[6] mode: claim | put | cas
-- ARGV[7] expected value (cas); for claim, 'sync' when the caller waits for
-- replicas: a lost claim then writes too, so that the WAIT that follows
-- also confirms the winner's entry it was told about. (WAIT counts up to
-- the connection's last write that was replicated, not the master's; the
-- write is the winner's entry again, unchanged: a PUBLISH would do on a
-- single server, but a cluster does not replicate PUBLISH or SPUBLISH.)
-- Reply: {1, version} written; claim lost: {0, stored entry};
-- cas failed: {0}; stored entry malformed: {-1}.
local now = now_ms()
local map, key, mode = ARGV[1], ARGV[2], ARGV[6]
local cur = live_entry(KEYS[1], KEYS[2], KEYS[3], map, key, ARGV[5], now)
if mode == 'claim' then
  if cur then
    if ARGV[7] == 'sync' then redis.call('HSET', KEYS[1], key, cur) end
    return {0, cur}
  end
elseif mode == 'cas' then
  if not cur then return {0} end
  local v, value = split_entry(cur)
  if not v then return {-1} end
  if value ~= ARGV[7] then return {0} end
end
return {1, write_entry(KEYS[1], KEYS[2], KEYS[3], map, key, ARGV[3],
                       tonumber(ARGV[4]), ARGV[5], now)}
