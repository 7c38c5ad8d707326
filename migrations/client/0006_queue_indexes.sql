-- Client state, version 6: the queues' lookups stay fast however long a home runs.
-- Sent outbox rows stay (without their ciphertext: their ids answer a peer's late
-- "undecryptable" notice) and consumed inbox rows stay (they answer duplicates),
-- so the queries for what is still pending or new must not scan them: a daemon
-- runs them for every message, and with a scan each send got slower with every
-- message the home had ever sent.
CREATE INDEX outbox_pending ON outbox (relay_url, seq) WHERE status = 'pending';
CREATE INDEX inbox_new ON inbox (seq) WHERE state = 'new';
-- The relay's `sent` (and a refusal) updates the history row of one of our
-- envelopes by its id alone.
CREATE INDEX history_out_id ON history (id) WHERE direction = 'out';
