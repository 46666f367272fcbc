-- Redeem with the non-negative check: more than the balance answers
-- -REFUSED and changes nothing.  KEYS and ARGV as in earn.lua.
if redis.call('EXISTS', KEYS[3]) == 1 then
    return redis.status_reply('REPLAY')
end
local p = tonumber(ARGV[1])
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
if bal < p then
    return redis.error_reply('REFUSED insufficient points')
end
local b = redis.call('DECRBY', KEYS[1], p)
local id = redis.call('XADD', KEYS[2], '*', 't', 'redeem', 'p', ARGV[1], 'k', ARGV[2], 'b', b)
redis.call('SET', KEYS[3], id)
return b
