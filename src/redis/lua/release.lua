-- release: ends a grant, only if it is still the current one.
-- KEYS[1] lock hash  KEYS[2] leases zset
-- ARGV[1] session id  ARGV[2] fence  ARGV[3] lease member
-- ARGV[4] lock channel (wakes waiters)  ARGV[5] leader channel ('' for locks)
-- Reply: 1 released; 0 not held by this grant (expired or released).
local ok, h = pcall(redis.call, 'HMGET', KEYS[1], 'owner', 'fence')
if not ok or h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[4], 'r')
if ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('PUBLISH', ARGV[5], '')
end
return 1
