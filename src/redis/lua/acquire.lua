-- acquire: grants a lock or leadership if nobody holds it.
-- KEYS[1] lock hash {owner, fence, value} with PEXPIRE  KEYS[2] fences hash
-- KEYS[3] leases zset (member -> expiry ms): elections only, so that the
-- sweeper can announce "no leader"; plain lock waiters wake on the PTTL.
-- ARGV[1] session id  ARGV[2] lease member "<L|E>:<name>"  ARGV[3] value
-- ARGV[4] TTL ms  ARGV[5] leader channel ('' for locks)  ARGV[6] lock channel
-- Reply: {1, fence} granted; {0, remaining ms of the holder} (-1: holder
-- without expiry, i.e. planted data).
-- Fences never repeat, even if Redis lost its data: each grant takes
-- max(last + 1, server time in ms).
local held = redis.call('PTTL', KEYS[1])
if held ~= -2 then return {0, held} end
local now = now_ms()
-- A previous grant that expired unswept is announced first, so observers
-- see "no leader" before the next leader, and waiters wake.
local election = ARGV[5] ~= ''
local stale = election and redis.call('ZSCORE', KEYS[3], ARGV[2])
if stale then
  redis.call('PUBLISH', ARGV[6], 'x')
  if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[5], '') end
end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0') or 0
local fence = math.max(last + 1, now)
redis.call('HSET', KEYS[2], ARGV[2], int(fence))
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'fence', int(fence), 'value', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if election then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
  redis.call('PUBLISH', ARGV[5], int(fence) .. '\n' .. ARGV[1] .. '\n' .. ARGV[3])
end
return {1, fence}
