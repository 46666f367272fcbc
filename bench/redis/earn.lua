-- The "Redis the way a competent team builds it" earn: one EVALSHA per
-- operation, durable with appendonly yes + appendfsync always (the AOF is
-- written and fsynced before the reply).  KEYS: balance, ledger stream,
-- idempotency record.  ARGV: points, idempotency key.  A replay answers
-- +REPLAY and changes nothing.
if redis.call('EXISTS', KEYS[3]) == 1 then
    return redis.status_reply('REPLAY')
end
local b = redis.call('INCRBY', KEYS[1], ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', 't', 'earn', 'p', ARGV[1], 'k', ARGV[2], 'b', b)
redis.call('SET', KEYS[3], id)
return b
