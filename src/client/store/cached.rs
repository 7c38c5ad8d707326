//! SQL through the connection's statement cache.
//!
//! The daemon runs the same few statements for every message it sends or
//! receives; parsing and planning each one again cost more than running it.
//! `execute_cached` and `query_row_cached` are `execute` and `query_row` with
//! the statement kept on the connection (rusqlite's LRU cache, sized by
//! [`STATEMENT_CACHE`]). A schema change invalidates them by itself.

use rusqlite::{Connection, Params, Row};

/// Statements kept per connection: more than the store has.
pub(crate) const STATEMENT_CACHE: usize = 128;

/// `execute` / `query_row` through the statement cache.
pub(crate) trait CachedSql {
    /// [`Connection::execute`], the statement cached.
    fn execute_cached(&self, sql: &str, params: impl Params) -> rusqlite::Result<usize>;
    /// [`Connection::query_row`], the statement cached.
    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn execute_cached(&self, sql: &str, params: impl Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    #[test]
    fn cached_statements_see_later_schema_and_rows() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER)").unwrap();
        assert_eq!(c.execute_cached("INSERT INTO t (a) VALUES (?1)", [1]).unwrap(), 1);
        assert_eq!(c.execute_cached("INSERT INTO t (a) VALUES (?1)", [2]).unwrap(), 1);
        let sum: i64 = c.query_row_cached("SELECT sum(a) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(sum, 3);
        // A schema change after caching: the statement is prepared again.
        c.execute_batch("ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 5").unwrap();
        let b: i64 = c.query_row_cached("SELECT max(b) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(b, 5);
        let none: Option<i64> = c
            .query_row_cached("SELECT a FROM t WHERE a = ?1", [9], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(none, None);
    }
}
