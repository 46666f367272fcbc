-- Transfer between two members.  KEYS: sender balance, recipient balance,
-- sender ledger, recipient ledger, idempotency record.  ARGV: points, key.
if redis.call('EXISTS', KEYS[5]) == 1 then
    return redis.status_reply('REPLAY')
end
local p = tonumber(ARGV[1])
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
if bal < p then
    return redis.error_reply('REFUSED insufficient points')
end
local b = redis.call('DECRBY', KEYS[1], p)
redis.call('INCRBY', KEYS[2], p)
local id = redis.call('XADD', KEYS[3], '*', 't', 'transfer_out', 'p', ARGV[1], 'k', ARGV[2], 'b', b)
redis.call('XADD', KEYS[4], '*', 't', 'transfer_in', 'p', ARGV[1], 'k', ARGV[2])
redis.call('SET', KEYS[5], id)
return b
