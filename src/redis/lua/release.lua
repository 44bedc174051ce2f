-- release: ends a grant, only if it is still the current one.
-- KEYS[1] lock key  KEYS[2] leases zset
-- ARGV[1] the grant's record prefix "<fence>\n<owner>\n"  ARGV[2] lease member
-- ARGV[3] lock channel (wakes waiters)  ARGV[4] leader channel ('' for locks)
-- Reply: 1 released; 0 not held by this grant (expired or released).
local ok, cur = pcall(redis.call, 'GET', KEYS[1])
if not ok or not cur or string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], 'r')
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[4], '')
end
return 1
