-- Relay store, version 1. Identities and envelope ids are raw bytes.

-- Envelopes waiting for their recipient's ack. AUTOINCREMENT: a seq is never
-- reused after a delete, so "seq > last seen" always finds only new rows.
CREATE TABLE envelopes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient   BLOB    NOT NULL,
    sender      BLOB    NOT NULL,
    id          BLOB    NOT NULL,
    body        BLOB    NOT NULL,
    accepted_ms INTEGER NOT NULL,
    UNIQUE (sender, id)
);
CREATE INDEX envelopes_by_recipient ON envelopes (recipient, seq);
CREATE INDEX envelopes_by_age ON envelopes (accepted_ms);

-- Invites a host published: only the SHA-256 of the invite id is kept.
CREATE TABLE invites (
    hash       BLOB    PRIMARY KEY,
    host       BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    claimed_by BLOB
) WITHOUT ROWID;

-- Claimed pairs; (a, b) with a < b bytewise.
CREATE TABLE pairs (
    a          BLOB    NOT NULL,
    b          BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
