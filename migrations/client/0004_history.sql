-- Client state, version 4: the conversation history, both directions, and
-- per-peer disappearing messages.
--
-- A history row is written in the transaction that seals (outgoing) or
-- decrypts (incoming) the message, so nothing is recorded that did not happen.
-- Only text messages are kept (control payloads such as hello or relay_moved
-- are not conversation). Plaintext: the file is 0600 in a 0700 directory.
CREATE TABLE history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- local order
    peer        TEXT NOT NULL,              -- b64u identity of the other side
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    id          TEXT NOT NULL,              -- b64u envelope id (the sender's)
    text        TEXT NOT NULL,
    reply_to    TEXT,                       -- b64u envelope id this answers
    at          INTEGER NOT NULL,           -- unix ms: sealed (out) or stored (in)
    relay_ts    INTEGER,                    -- unix ms, relay accept time (in only)
    sent_at     INTEGER,                    -- unix ms the relay took it (out only)
    state       TEXT NOT NULL CHECK (state IN ('queued', 'stored', 'delivered', 'failed', 'received')),
    UNIQUE (peer, direction, id)
) STRICT;
CREATE INDEX history_peer_at ON history (peer, at);
CREATE INDEX history_at ON history (at);

-- Disappearing messages: plaintext (history, consumed inbox rows) and finished
-- outbox rows of this peer are deleted this many seconds after the message.
-- NULL: keep.
ALTER TABLE peers ADD COLUMN expire_secs INTEGER;
