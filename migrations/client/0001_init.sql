-- Client state, version 1. One database per home; every ratchet step and the
-- message it produced or consumed commit in the same transaction.

-- Paired peers and their Double Ratchet session (serialized JSON; secret: the
-- file is 0600 in a 0700 directory).
CREATE TABLE peers (
    pk          TEXT PRIMARY KEY,           -- b64u Ed25519 identity
    label       TEXT UNIQUE,                -- local name, optional
    role        TEXT NOT NULL CHECK (role IN ('host', 'guest')), -- the PEER's role
    relay_url   TEXT NOT NULL,              -- normalised ws(s):// URL
    invite_id   TEXT NOT NULL,              -- b64u invite id that paired us
    session     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,           -- unix s
    last_seen   INTEGER                     -- unix s of the last message from them
) STRICT;

-- Invites this identity created, with the one-time prekey (secret) until used.
CREATE TABLE invites (
    id          TEXT PRIMARY KEY,           -- b64u invite id
    label       TEXT,                       -- label for the peer who accepts
    relay_url   TEXT NOT NULL,
    encoded     TEXT NOT NULL,
    opk         BLOB,                       -- serialized OneTimePrekey; NULL once used or revoked
    status      TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'revoked')),
    claimed_by  TEXT,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Decrypted messages. (peer, id) is the dedupe key: a redelivered envelope that
-- is already here is acked again and never decrypted or handled twice.
CREATE TABLE inbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    peer        TEXT NOT NULL,
    id          TEXT NOT NULL,              -- b64u envelope id (sender's)
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    reply_to    TEXT,
    relay_ts    INTEGER NOT NULL,           -- unix ms, relay accept time
    received_at INTEGER NOT NULL,           -- unix ms
    state       TEXT NOT NULL CHECK (state IN ('new', 'done')),
    UNIQUE (peer, id)
) STRICT;

-- Sealed envelopes waiting for the relay's `sent`. Written before the first try.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,       -- b64u envelope id
    peer        TEXT NOT NULL,
    relay_url   TEXT NOT NULL,
    body        BLOB NOT NULL,
    claim       TEXT,                       -- b64u invite id, first contact only
    reply_to    TEXT,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    error       TEXT,
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER
) STRICT;

-- Session tokens for the resume fast path, per relay.
CREATE TABLE relay_tokens (
    relay_url   TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
