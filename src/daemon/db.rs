//! The API's database thread: one SQLite connection on its own OS thread, so
//! reads, leases and acks never block the async runtime's workers (SQLite with
//! `synchronous = FULL` waits for fsync). Callers send a closure and await its
//! answer.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::DaemonError;
use crate::client::store::Store;

type Call = Box<dyn FnOnce(&mut Store) + Send>;

/// A handle on the database thread; cheap to clone. The thread ends when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    calls: mpsc::Sender<Call>,
}

impl Db {
    /// Open the store on a new thread.
    pub(crate) fn open(path: &std::path::Path) -> Result<Self, DaemonError> {
        let store = Store::open(path).map_err(|e| DaemonError::Client(e.into()))?;
        Self::run(path, store)
    }

    /// [`Self::open`] for the daemon's API, whose writes are leases and
    /// handler process groups: state that means nothing after the OS went
    /// down (leases are released when a daemon starts, the groups are gone),
    /// so its commits skip the fsync (`synchronous = NORMAL`: still written
    /// to the WAL, so a crash of the daemon alone loses nothing). Consuming a
    /// message goes through the engine, whose commits stay FULL.
    pub(crate) fn open_volatile(path: &std::path::Path) -> Result<Self, DaemonError> {
        let store = Store::open(path).map_err(|e| DaemonError::Client(e.into()))?;
        store
            .conn()
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| DaemonError::Client(crate::client::store::StoreError::from(e).into()))?;
        Self::run(path, store)
    }

    fn run(path: &std::path::Path, mut store: Store) -> Result<Self, DaemonError> {
        let (calls, rx) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("agentroom-db".into())
            .spawn(move || {
                while let Ok(call) = rx.recv() {
                    call(&mut store);
                }
            })
            .map_err(|source| DaemonError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { calls })
    }

    /// Run `f` on the database thread. `Err(Stopped)` when the thread is gone.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> R + Send + 'static,
    ) -> Result<R, DaemonError> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |store| {
            let _ = tx.send(f(store));
        });
        self.calls.send(call).map_err(|_| DaemonError::Stopped)?;
        rx.await.map_err(|_| DaemonError::Stopped)
    }
}
