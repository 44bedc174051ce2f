-- renew: extends a grant by its TTL, only if it is still the current one.
-- KEYS[1] lock hash  KEYS[2] leases zset
-- ARGV[1] session id  ARGV[2] fence  ARGV[3] lease member  ARGV[4] TTL ms
-- ARGV[5] '1' for an election (its expiry is tracked in the leases zset)
-- Reply: 1 renewed; 0 not held by this grant.
local ok, h = pcall(redis.call, 'HMGET', KEYS[1], 'owner', 'fence')
if not ok or h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[4]), ARGV[3])
end
return 1
