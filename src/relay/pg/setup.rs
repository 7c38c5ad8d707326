//! Setting a node up: the TLS connector, migrations under an advisory lock, and
//! the TTL sweep.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use deadpool_postgres::Pool;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgError, i64_of};
use crate::relay::metrics::Metrics;
use crate::relay::store::{StoreError, StoreOptions, now_ms};

/// Advisory-lock class (first key) of the migration lock.
const MIGRATION_LOCK: i32 = 0x6172_0001;
/// The PostgreSQL migrations, in order; applied once each, recorded in
/// `agentroom_migrations`.
const MIGRATIONS: &[(i32, &str)] =
    &[(1, include_str!("../../../migrations/postgres/001_init.sql"))];

/// The TLS connector of every database connection: the bundled and OS roots, plus
/// `ca_file`. Used only for URLs with `sslmode=require` (see [`PgUrl::config`]).
pub(super) fn connector(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, PgError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|source| PgError::CaFile { path: path.to_path_buf(), source })?;
        let bad = || PgError::CaCertificate { path: path.to_path_buf() };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().map_err(|_| bad())?;
        if certs.is_empty() {
            return Err(bad());
        }
        for c in certs {
            roots.add(c).map_err(|_| bad())?;
        }
    }
    let config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Apply the migrations not yet recorded, one node at a time (session advisory
/// lock: a node that starts while another migrates waits, then finds it done).
pub(super) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut c = pool.get().await?;
    c.execute("SELECT pg_advisory_lock($1, 0)", &[&MIGRATION_LOCK]).await?;
    let r = async {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS agentroom_migrations (
                 version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let tx = c.transaction().await?;
            let done = tx
                .query_opt("SELECT 1 FROM agentroom_migrations WHERE version = $1", &[version])
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO agentroom_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &i64_of(crate::relay::now_secs())],
                )
                .await?;
                tracing::info!(version, "PostgreSQL migration applied");
            }
            tx.commit().await?;
        }
        Ok::<(), tokio_postgres::Error>(())
    }
    .await;
    c.execute("SELECT pg_advisory_unlock($1, 0)", &[&MIGRATION_LOCK]).await?;
    r.map_err(StoreError::from)
}

/// Every node sweeps (the deletes are idempotent) and refreshes the queue-depth
/// gauge, which between sweeps moves only with this node's own inserts and deletes.
pub(super) async fn sweep_loop(pool: Pool, opts: StoreOptions, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(opts.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&pool, &opts, &metrics).await {
            tracing::warn!(error = %e, "pending TTL sweep failed");
        }
    }
}

async fn sweep(pool: &Pool, opts: &StoreOptions, metrics: &Metrics) -> Result<(), StoreError> {
    let c = pool.get().await?;
    let ttl_ms = u64::try_from(opts.ttl.as_millis()).unwrap_or(u64::MAX);
    let cutoff = i64_of(now_ms().saturating_sub(ttl_ms));
    let n = c.execute("DELETE FROM envelopes WHERE accepted_ms < $1", &[&cutoff]).await?;
    let now = i64_of(crate::relay::now_secs());
    c.execute(
        "DELETE FROM invites WHERE claimed_by IS NULL AND expires_at < $1",
        &[&now.saturating_sub(86_400)],
    )
    .await?;
    if n > 0 {
        tracing::info!(expired = n, "swept expired envelopes");
        metrics.envelopes_expired.fetch_add(n, Ordering::Relaxed);
    }
    let total: i64 = c.query_one("SELECT count(*) FROM envelopes", &[]).await?.get(0);
    metrics.pending_total.store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
    Ok(())
}
