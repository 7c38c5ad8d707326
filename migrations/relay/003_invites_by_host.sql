-- Relay store, version 3: `invite_publish` counts the host's open invites against
-- MAX_INVITES_PER_PK; without this index that count scans every invite.
CREATE INDEX invites_by_host ON invites (host, expires_at);
