-- renew: extends a grant by its TTL, only if it is still the current one.
-- KEYS[1] lock key  KEYS[2] leases zset  KEYS[3] fences hash
-- ARGV[1] the grant's record prefix "<fence>\n<owner>\n"  ARGV[2] lease member
-- ARGV[3] TTL ms  ARGV[4] '1' for an election (expiry tracked in the leases zset)
-- ARGV[5] the grant's fence
-- Reply: 1 renewed; 0 not held by this grant; {-1, last fence granted} when
-- no grant ever had that fence.
local ok, cur = pcall(redis.call, 'GET', KEYS[1])
if not ok or not cur or string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then
  return not_granted(KEYS[3], ARGV[2], ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[2])
end
return 1
