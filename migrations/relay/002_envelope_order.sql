-- Relay store, version 2: the relay's own accept order (issue 18).
--
-- `ord` is the sequence number the relay gives an envelope when it accepts it
-- (before it goes live or to this table). A live envelope that is stored later,
-- after its ack window or because its recipient's connection ended, keeps its
-- `ord`, so reading a recipient's queue by `ord` gives every sender's envelopes
-- in the order they were accepted. Rows from version 1 keep their `seq` order.
ALTER TABLE envelopes ADD COLUMN ord INTEGER NOT NULL DEFAULT 0;
UPDATE envelopes SET ord = seq;
DROP INDEX envelopes_by_recipient;
CREATE INDEX envelopes_by_recipient ON envelopes (recipient, ord);
