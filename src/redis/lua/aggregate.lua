-- aggregate: combines the live sessions' views of one node, or of all.
-- KEYS[1] sessions  KEYS[2] node_index
-- ARGV[1] key prefix  ARGV[2] per-metric ops "name\top\n..." (op: sum avg min max)
-- ARGV[3] default op  ARGV[4] node id, or '' for every node
-- Reply: {skipped, {node, reporters, name, value, count, name, ...}, ...}
-- where value is a decimal string (%.17g) and skipped counts malformed
-- views or values that were ignored.
local now = now_ms()
local prefix, default = ARGV[1], ARGV[3]
local ops = {}
for name, op in string.gmatch(ARGV[2], '([^\t\n]+)\t([^\n]+)') do ops[name] = op end
local live = {}
local skipped = 0

local function is_live(sid)
  local v = live[sid]
  if v == nil then
    v = alive(KEYS[1], sid, now)
    live[sid] = v
  end
  return v
end

local function combine(node)
  local ok, h = pcall(redis.call, 'HGETALL', prefix .. 'node:' .. node)
  if not ok then
    skipped = skipped + 1
    return nil
  end
  local acc, names, reporters = {}, {}, 0
  for i = 1, #h, 2 do
    if is_live(h[i]) then
      reporters = reporters + 1
      local enc, matched = h[i + 1], 0
      for name, text in string.gmatch(enc, '([^\t\n]+)\t([^\n]*)') do
        matched = matched + 1
        local v = tonumber(text)
        if v == nil or v ~= v or v == math.huge or v == -math.huge then
          skipped = skipped + 1
        else
          local op = ops[name] or default
          local a = acc[name]
          if a == nil then
            acc[name] = {v, 1}
            names[#names + 1] = name
          else
            if op == 'min' then
              if v < a[1] then a[1] = v end
            elseif op == 'max' then
              if v > a[1] then a[1] = v end
            else
              a[1] = a[1] + v
            end
            a[2] = a[2] + 1
          end
        end
      end
      if matched == 0 and #enc > 0 then skipped = skipped + 1 end
    end
  end
  if reporters == 0 then return nil end
  local out = {node, reporters}
  for _, name in ipairs(names) do
    local a = acc[name]
    local v = a[1]
    if (ops[name] or default) == 'avg' then v = v / a[2] end
    out[#out + 1] = name
    out[#out + 1] = string.format('%.17g', v)
    out[#out + 1] = a[2]
  end
  return out
end

local result = {0}
local nodes
if ARGV[4] ~= '' then nodes = {ARGV[4]} else nodes = redis.call('SMEMBERS', KEYS[2]) end
for _, node in ipairs(nodes) do
  local r = combine(node)
  if r then result[#result + 1] = r end
end
result[1] = skipped
return result
