-- Client state, version 3: what a home needs to restart cleanly.

-- Small facts a home keeps across runs. Keys in use:
--   room_port        the port `room open` bound last; reused so guests keep their URL
--   room_local_url   that room's loopback relay URL
--   room_public_url  that room's public relay URL (the one in its invites)
--   room_relay_update the last signed relay update a room printed (arru1.…)
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
) STRICT;

-- The process group of the handler working on this message (serve / room open),
-- NULL when none runs. A run killed with -9 leaves it set: the next run ends that
-- group before handling the message again, so an orphan never runs beside it.
-- handler_start is the group leader's start time (/proc, clock ticks), so a reused
-- PID is never mistaken for the orphan.
ALTER TABLE inbox ADD COLUMN handler_pgid INTEGER;
ALTER TABLE inbox ADD COLUMN handler_start INTEGER;

-- The newest signed relay update applied for this peer (its `seq`, unix ms); an
-- update that is not newer is refused, so an old string cannot be replayed.
ALTER TABLE peers ADD COLUMN relay_update_seq INTEGER NOT NULL DEFAULT 0;
