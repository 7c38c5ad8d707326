-- Client state, version 5: a peer marked verified (`agentroom peers verify`).
--
-- The safety number that was compared, not a flag: the mark holds only while
-- the pair's safety number is still that one. A new identity on either side
-- (the peer re-paired with another key, or `setup --force` here) gives another
-- safety number, and the peer shows as not verified again. NULL: not verified.
ALTER TABLE peers ADD COLUMN verified_safety TEXT;
ALTER TABLE peers ADD COLUMN verified_at INTEGER;  -- unix s
