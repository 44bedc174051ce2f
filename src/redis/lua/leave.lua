-- leave: ends a session's membership, drops its node views and owned
-- counter contributions, frees its slots. The session itself stays alive.
-- KEYS[1] members  KEYS[2] member_session  KEYS[3] session_member
-- KEYS[4] node_index (set of node ids)  KEYS[5] owned_index (set of counters)
-- KEYS[6] views generation  KEYS[7] this session's slotsess hash
-- ARGV[1] key prefix  ARGV[2] session id  ARGV[3] membership event channel
-- Reply: 1 if the session was a member, else 0 (or in a cluster
-- {'fleet:keys', ...}: see common.lua).
local prefix, sid = ARGV[1], ARGV[2]
want_indexed(KEYS[4], prefix, 'node:')
want_indexed(KEYS[5], prefix, 'owned:')
want_pools(KEYS[7], prefix)
local m = missing_keys()
if m then return m end
redis.call('INCR', KEYS[6])
drop_session_fields(KEYS[4], prefix, 'node:', {sid})
drop_session_fields(KEYS[5], prefix, 'owned:', {sid})
free_slots(prefix, sid)
if drop_member(KEYS[1], KEYS[2], KEYS[3], sid, ARGV[3], 'L') then return 1 end
return 0
