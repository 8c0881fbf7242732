//! A fair (first come, first served) lock, held by a session, whose every grant carries a
//! fencing token that grows strictly from one grant to the next.
//!
//! Each request is an ephemeral sequential node under `/rmif/locks/{name}`; the lowest holds
//! the lock and every other waits for the node just before its own to go. A holder that dies
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

use super::{create_entry, deleted, ensure_path, queue_order, remove_entry};
use crate::error::RegistryError;
use crate::path::name as name_of;
use crate::{Consistency, Session};

/// Where locks live in the tree.
pub const LOCKS_PATH: &str = "/rmif/locks";

/// The prefix of a lock request's node name.
const REQUEST: &str = "lock-";

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

impl FairLock {
    /// The lock `name` (a single path segment), taken in `session`.
    pub async fn new(session: Arc<Session>, name: &str) -> Result<Self, RegistryError> {
        let path = format!("{LOCKS_PATH}/{name}");
        crate::path::validate(&path)?;
        ensure_path(session.client(), &path).await?;
        Ok(FairLock { session, path })
    }

    /// Waits for the lock, behind every request made before this one.
    pub async fn lock(&self) -> Result<LockGuard, RegistryError> {
        match self.acquire(None).await? {
            Some(guard) => Ok(guard),
            None => unreachable!("a wait without a deadline ends with the lock or an error"),
        }
    }

    /// Takes the lock if no one holds or awaits it; `None` otherwise.
    pub async fn try_lock(&self) -> Result<Option<LockGuard>, RegistryError> {
        self.acquire(Some(Instant::now())).await
    }

    /// Waits for the lock at most `timeout`; `None` if it was not granted by then (the request
    /// is withdrawn).
    pub async fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard>, RegistryError> {
        self.acquire(Some(Instant::now() + timeout)).await
    }

    async fn acquire(&self, deadline: Option<Instant>) -> Result<Option<LockGuard>, RegistryError> {
        let prefix = format!("{}/{REQUEST}", self.path);
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
            let queue = queue_order(list, &[REQUEST]);
            let name = name_of(&entry.path);
            let Some(place) = queue.iter().position(|n| n == name) else {
                return Err(RegistryError::NoNode {
                    path: entry.path.clone(),
                });
            };
            if place == 0 {
                return Ok(Some(LockGuard {
                    entry: Some(entry),
                    token: created.stat.czxid,
                }));
            }
            let before = format!("{}/{}", self.path, queue[place - 1]);
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

    /// Resolves when this grant must be taken as lost, saying why (see
    /// [`super::session_lost`]): whoever acts under the lock stops when it does.
    pub async fn lost(&self) -> String {
        let session = &self
            .entry
            .as_ref()
            .expect("a guard holds its entry")
            .session;
        super::session_lost(session).await
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
