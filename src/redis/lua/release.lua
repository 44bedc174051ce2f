-- release: ends a grant, only if it is still the current one.
-- KEYS[1] lock key  KEYS[2] leases zset  KEYS[3] fences hash
-- ARGV[1] the grant's record prefix "<fence>\n<owner>\n"  ARGV[2] lease member
-- ARGV[3] lock channel (wakes waiters)  ARGV[4] leader channel ('' for locks)
-- ARGV[5] the grant's fence
-- Reply: 1 released; 0 not held by this grant (expired or released);
-- {-1, last fence granted} when no grant ever had that fence.
local ok, cur = pcall(redis.call, 'GET', KEYS[1])
if not ok or not cur or string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then
  return not_granted(KEYS[3], ARGV[2], ARGV[5])
end
redis.call('DEL', KEYS[1])
publish(ARGV[3], 'r')
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  publish(ARGV[4], '')
end
return 1
