-- Relay store on PostgreSQL, version 1: the SQLite schema (relay migrations
-- 001-003) in one step, shared by every relay node of a cluster.

-- Envelopes waiting for their recipient's ack. `ord` is taken from the sequence
-- at insert, while the inserting transaction holds the recipient's advisory lock
-- (see src/relay/pg/writer.rs): per recipient, commit order is `ord` order, so a
-- reader that has seen `ord` N never finds a smaller one committed later.
CREATE TABLE envelopes (
    ord         BIGSERIAL PRIMARY KEY,
    recipient   BYTEA  NOT NULL,
    sender      BYTEA  NOT NULL,
    id          BYTEA  NOT NULL,
    body        BYTEA  NOT NULL,
    accepted_ms BIGINT NOT NULL,
    UNIQUE (sender, id)
);
CREATE INDEX envelopes_by_recipient ON envelopes (recipient, ord);
CREATE INDEX envelopes_by_age ON envelopes (accepted_ms);

-- Invites a host published: only the SHA-256 of the invite id is kept.
CREATE TABLE invites (
    hash       BYTEA   PRIMARY KEY,
    host       BYTEA   NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    claimed_by BYTEA
);
CREATE INDEX invites_by_host ON invites (host, expires_at);

-- Claimed pairs; (a, b) with a < b bytewise.
CREATE TABLE pairs (
    a          BYTEA  NOT NULL,
    b          BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (a, b)
);
