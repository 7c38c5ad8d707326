//! Small per-home facts kept across runs (the room's last port and URLs).

use rusqlite::{Connection, OptionalExtension, params};

use super::CachedSql;
use super::StoreError;

/// The port `room open` bound last in this home.
pub const ROOM_PORT: &str = "room_port";
/// The loopback relay URL of the last room in this home.
pub const ROOM_LOCAL_URL: &str = "room_local_url";
/// The public relay URL (the one in its invites) of the last room in this home.
pub const ROOM_PUBLIC_URL: &str = "room_public_url";
/// The last signed relay update a room of this home printed (`arru1.…`).
pub const ROOM_RELAY_UPDATE: &str = "room_relay_update";

/// A stored value.
pub fn get_setting(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row_cached("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Store (or replace) a value.
pub fn set_setting(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
