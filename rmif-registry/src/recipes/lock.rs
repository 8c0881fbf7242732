//! A fair (first come, first served) lock, held by a session, whose every grant carries a
//! fencing token that grows strictly from one grant to the next; and its read-write variant
//! ([`ReadWriteLock`]: readers share, a writer is alone, still first come, first served).
//!
//! Each request is an ephemeral sequential node under `/rmif/locks/{name}`; the lowest holds
//! the lock and every other waits for the node just before its own to go (a reader, for the
//! last writer before it). A holder that dies
//! (its session expires) releases the lock with its node. Since the registry may expire a
//! session that merely lost contact, a holder can lose the lock without knowing at once: pass
//! [`LockGuard::token`] to the resource, which rejects a token lower than one it already saw.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use rmif_registry::RegistryClient;
//! use rmif_registry::recipes::lock::FairLock;
//! # use rmif_registry_server::{RegistryConfig, RegistryServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! # let members = [member.client_addr()];
//! let client = RegistryClient::connect(&members);
//! let session = Arc::new(client.open_session(Duration::from_secs(5)).await?);
//! let printer = FairLock::new(session.clone(), "printer").await?;
//!
//! let first = printer.lock().await?;
//! // Held: another attempt gives up at once.
//! assert!(printer.try_lock().await?.is_none());
//! let token = first.token();
//! first.unlock().await?;
//!
//! let second = printer.lock().await?;
//! assert!(second.token() > token, "every grant has a higher token");
//! # drop(second);
//! # member.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{create_entry, deleted, queue_order, remove_entry};
use crate::error::RegistryError;
use crate::path::name as name_of;
use crate::{Consistency, Session};

/// Where locks live in the tree.
pub const LOCKS_PATH: &str = "/rmif/locks";

/// The prefix of an exclusive request's node name.
const EXCLUSIVE: &str = "lock-";
/// The prefix of a read request's node name ([`ReadWriteLock`]).
const READ: &str = "read-";
/// The prefix of a write request's node name ([`ReadWriteLock`]).
const WRITE: &str = "write-";

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
enum Request {
    Exclusive,
    Read,
    Write,
}

impl Request {
    fn prefix(self) -> &'static str {
        match self {
            Request::Exclusive => EXCLUSIVE,
            Request::Read => READ,
            Request::Write => WRITE,
        }
    }

    /// Of the requests in line before this one (`before`, in order), the one it waits for, if
    /// any: the one just before it, or for a reader the last writer before it.
    fn waits_for(self, before: &[String]) -> Option<&String> {
        match self {
            Request::Exclusive | Request::Write => before.last(),
            Request::Read => before.iter().rev().find(|name| name.starts_with(WRITE)),
        }
    }
}

/// A named fair lock, taken in a session.
#[derive(Debug, Clone)]
pub struct FairLock {
    session: Arc<Session>,
    path: String,
}

/// A granted lock. Released by [`LockGuard::unlock`], when dropped (in the background), or
/// when its session ends.
#[derive(Debug)]
pub struct LockGuard {
    entry: Option<Entry>,
    token: u64,
}

/// A lock request's node, removed when dropped unless taken.
#[derive(Debug)]
struct Entry {
    session: Arc<Session>,
    path: String,
}

impl Entry {
    /// The node's path, which is no longer removed on drop.
    fn take(mut self) -> (Arc<Session>, String) {
        let path = std::mem::take(&mut self.path);
        (self.session.clone(), path)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if !self.path.is_empty() {
            remove_entry(self.session.clone(), std::mem::take(&mut self.path));
        }
    }
}

/// A named read-write lock, taken in a session: any number of readers at once, or one writer;
/// requests are served in the order they were made (a reader behind a waiting writer waits).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use rmif_registry::RegistryClient;
/// use rmif_registry::recipes::lock::ReadWriteLock;
/// # use rmif_registry_server::{RegistryConfig, RegistryServer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let data = tempfile::tempdir()?;
/// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
/// # let members = [member.client_addr()];
/// let client = RegistryClient::connect(&members);
/// let session = Arc::new(client.open_session(Duration::from_secs(5)).await?);
/// let catalog = ReadWriteLock::new(session, "catalog").await?;
/// let reading = catalog.read().await?;
/// let also_reading = catalog.read().await?; // readers share
/// assert!(catalog.write_timeout(Duration::from_millis(100)).await?.is_none());
/// drop((reading, also_reading));
/// let writing = catalog.write().await?;
/// # drop(writing);
/// # member.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReadWriteLock {
    line: FairLock,
}

impl ReadWriteLock {
    /// The read-write lock `name` (a single path segment), taken in `session`. Its requests
    /// live beside an exclusive lock of the same name's, but never wait for them.
    pub async fn new(session: Arc<Session>, name: &str) -> Result<Self, RegistryError> {
        Ok(ReadWriteLock {
            line: FairLock::new(session, name).await?,
        })
    }

    /// Waits to read, behind every write requested before.
    pub async fn read(&self) -> Result<LockGuard, RegistryError> {
        let granted = self.line.acquire(Request::Read, None).await?;
        Ok(granted.expect("a wait without a deadline ends with the lock or an error"))
    }

    /// Waits to write, behind every request made before.
    pub async fn write(&self) -> Result<LockGuard, RegistryError> {
        let granted = self.line.acquire(Request::Write, None).await?;
        Ok(granted.expect("a wait without a deadline ends with the lock or an error"))
    }

    /// Waits to read at most `timeout`; `None` if not granted by then.
    pub async fn read_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard>, RegistryError> {
        self.line
            .acquire(Request::Read, Some(Instant::now() + timeout))
            .await
    }

    /// Waits to write at most `timeout`; `None` if not granted by then.
    pub async fn write_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard>, RegistryError> {
        self.line
            .acquire(Request::Write, Some(Instant::now() + timeout))
            .await
    }
}

impl FairLock {
    /// The lock `name` (a single path segment), taken in `session`.
    pub async fn new(session: Arc<Session>, name: &str) -> Result<Self, RegistryError> {
        let path = format!("{LOCKS_PATH}/{name}");
        crate::path::validate(&path)?;
        session.client().create_path(&path).await?;
        Ok(FairLock { session, path })
    }

    /// Waits for the lock, behind every request made before this one.
    pub async fn lock(&self) -> Result<LockGuard, RegistryError> {
        match self.acquire(Request::Exclusive, None).await? {
            Some(guard) => Ok(guard),
            None => unreachable!("a wait without a deadline ends with the lock or an error"),
        }
    }

    /// Takes the lock if no one holds or awaits it; `None` otherwise.
    pub async fn try_lock(&self) -> Result<Option<LockGuard>, RegistryError> {
        self.acquire(Request::Exclusive, Some(Instant::now())).await
    }

    /// Waits for the lock at most `timeout`; `None` if it was not granted by then (the request
    /// is withdrawn).
    pub async fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard>, RegistryError> {
        self.acquire(Request::Exclusive, Some(Instant::now() + timeout))
            .await
    }

    /// Puts a request of kind `request` in line and waits (until `deadline`, if given) for
    /// the requests it waits for to go.
    async fn acquire(
        &self,
        request: Request,
        deadline: Option<Instant>,
    ) -> Result<Option<LockGuard>, RegistryError> {
        let prefix = format!("{}/{}", self.path, request.prefix());
        let created = create_entry(&self.session, prefix, Vec::new()).await?;
        // From here on, giving up (an error, the deadline, the caller dropping this future)
        // withdraws the request.
        let entry = Entry {
            session: self.session.clone(),
            path: created.path,
        };
        let client = self.session.client();
        loop {
            let list = client
                .children(&self.path, Consistency::Linearizable)
                .await?;
            // An exclusive lock's line and a read-write lock's of the same name are apart.
            let kinds: &[&str] = match request {
                Request::Exclusive => &[EXCLUSIVE],
                Request::Read | Request::Write => &[READ, WRITE],
            };
            let queue = queue_order(list, kinds);
            let name = name_of(&entry.path);
            let Some(place) = queue.iter().position(|n| n == name) else {
                return Err(RegistryError::NoNode {
                    path: entry.path.clone(),
                });
            };
            let Some(blocker) = request.waits_for(&queue[..place]) else {
                return Ok(Some(LockGuard {
                    entry: Some(entry),
                    token: created.stat.czxid,
                }));
            };
            let before = format!("{}/{blocker}", self.path);
            match deadline {
                None => deleted(client, &before).await?,
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, deleted(client, &before)).await {
                        Ok(gone) => gone?,
                        Err(_) => return Ok(None),
                    }
                }
            }
        }
    }
}

impl LockGuard {
    /// The fencing token of this grant: the registry's zxid of the request, higher for every
    /// later grant of the same lock. A resource that remembers the highest token it saw can
    /// refuse a holder whose session expired without it knowing.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Resolves when this grant must be taken as lost, saying why: its session may have
    /// expired (see [`super::session_lost`]), or its node was deleted (by hand, say). Whoever
    /// acts under the lock stops when it does.
    pub async fn lost(&self) -> String {
        let entry = self.entry.as_ref().expect("a guard holds its entry");
        tokio::select! {
            reason = super::session_lost(&entry.session) => reason,
            gone = deleted(entry.session.client(), &entry.path) => match gone {
                Ok(()) => "the lock's request node was deleted".to_owned(),
                Err(error) => format!("cannot follow the lock's request node: {error}"),
            },
        }
    }

    /// Releases the lock now.
    pub async fn unlock(mut self) -> Result<(), RegistryError> {
        let (session, path) = self.entry.take().expect("a guard holds its entry").take();
        match session.delete(&path, None).await {
            Ok(_) | Err(RegistryError::NoNode { .. }) => Ok(()),
            Err(error) => {
                // Still ours: released in the background, or with the session.
                remove_entry(session, path);
                Err(error)
            }
        }
    }
}
