-- Client state, version 2: leases for consumers that take one message at a time
-- and confirm it later (`agentroom mcp`: next_message then ack). A leased row
-- stays `new`; it is offered again once `lease_until` has passed without an ack,
-- so a host that crashes between the two calls never loses the message.
ALTER TABLE inbox ADD COLUMN lease_id TEXT;                          -- random, NULL when not leased
ALTER TABLE inbox ADD COLUMN lease_until INTEGER;                    -- unix ms
ALTER TABLE inbox ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0;  -- times leased so far
CREATE UNIQUE INDEX inbox_lease_id ON inbox (lease_id) WHERE lease_id IS NOT NULL;
