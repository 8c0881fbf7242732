//! Persistent watches shared within one client: every persistent or recursive watcher of the same
//! node on one [`RegistryClient`] reads a single registry stream, fanned out in the process, as
//! ZooKeeper's clients do. A change that reaches a thousand local watchers then costs the member
//! one message instead of a thousand.
//!
//! Each local watcher keeps its own position: it is armed at the newest zxid the shared stream
//! or its client has seen, skips what came before, and, if it falls too far behind the others,
//! leaves the shared stream for a private one that resumes from its own last zxid. Nothing is
//! lost either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::stream::{Outlet, follow};
use crate::api::{WatchMessage, WatchMode};
use crate::client::RegistryClient;
use crate::error::RegistryError;

/// Messages a shared stream keeps for its slowest local watcher before that watcher is moved
/// to a private stream.
const BACKLOG: usize = 1024;

type Key = (String, WatchMode);

/// What one message of a shared stream carries to every local watcher.
pub(crate) type Shared = Result<WatchMessage, RegistryError>;

/// The shared streams of one client, by node and mode. Entries die with their last watcher.
#[derive(Default)]
pub(crate) struct SharedWatches {
    hubs: Mutex<HashMap<Key, Weak<Hub>>>,
}

impl SharedWatches {
    /// The live stream of `path` in `mode`, or a new one (whose reading starts at once).
    fn hub(&self, client: &RegistryClient, path: &str, mode: WatchMode) -> Arc<Hub> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        hubs.retain(|_, hub| hub.strong_count() > 0);
        let key = (path.to_owned(), mode);
        if let Some(hub) = hubs.get(&key).and_then(Weak::upgrade)
            && !hub.core.has_ended()
        {
            return hub;
        }
        let hub = Hub::start(client.clone(), path, mode);
        hubs.insert(key, Arc::downgrade(&hub));
        hub
    }
}

/// One shared registry stream; reading stops when the last local watcher drops it.
pub(crate) struct Hub {
    core: Arc<HubCore>,
    stop: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Hub {
    fn start(client: RegistryClient, path: &str, mode: WatchMode) -> Arc<Hub> {
        let (feed, _) = broadcast::channel(BACKLOG);
        let core = Arc::new(HubCore {
            state: Mutex::new(HubState {
                last_zxid: None,
                ended: None,
                feed,
            }),
            armed: watch::Sender::new(false),
        });
        let stop = CancellationToken::new();
        tokio::spawn(follow(
            client,
            path.to_owned(),
            mode.into(),
            None,
            core.clone(),
            stop.clone(),
        ));
        Arc::new(Hub { core, stop })
    }
}

/// The part of a shared stream its reading task writes to.
pub(crate) struct HubCore {
    state: Mutex<HubState>,
    /// True once the stream is armed (or ended before it could be).
    armed: watch::Sender<bool>,
}

struct HubState {
    /// The zxid of the newest message read; `None` until armed.
    last_zxid: Option<u64>,
    /// The error that ended the stream for good.
    ended: Option<RegistryError>,
    feed: broadcast::Sender<Shared>,
}

/// A shared stream hands what it reads to every local watcher.
impl Outlet for Arc<HubCore> {
    async fn deliver(&self, message: Result<WatchMessage, RegistryError>) -> bool {
        self.publish(message);
        true
    }
}

impl HubCore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// Hands a message read from the registry to every local watcher.
    fn publish(&self, message: Shared) {
        let mut state = self.lock();
        match message {
            // Each local watcher gets an armed message of its own when it joins.
            Ok(message) if message.is_armed() => state.last_zxid = Some(message.zxid),
            Ok(message) => {
                state.last_zxid = Some(message.zxid);
                let _ = state.feed.send(Ok(message));
            }
            Err(error) => {
                state.ended = Some(error.clone());
                let _ = state.feed.send(Err(error));
            }
        }
        drop(state);
        self.armed.send_replace(true);
    }
}

/// A local watcher's place in a shared stream.
pub(crate) struct SharedFeed {
    /// Keeps the stream read while this watcher lives.
    _hub: Arc<Hub>,
    feed: broadcast::Receiver<Shared>,
    /// Messages up to this zxid were already delivered (or came before the watcher was armed).
    pub(crate) last_zxid: u64,
}

/// What [`SharedFeed::next`] found.
pub(crate) enum Next {
    Message(Shared),
    /// The watcher fell more than [`BACKLOG`] messages behind: it must resume on its own from
    /// `last_zxid`.
    Behind,
}

impl SharedFeed {
    /// Joins the shared stream of `path` in `mode`, once it is armed. The first message of the
    /// watcher is the returned zxid's armed message.
    pub(crate) async fn join(
        client: &RegistryClient,
        path: &str,
        mode: WatchMode,
    ) -> Result<SharedFeed, RegistryError> {
        let hub = client.shared_watches().hub(client, path, mode);
        let mut armed = hub.core.armed.subscribe();
        // Only fails once the sender is dropped, which the hub held here prevents.
        let _ = armed.wait_for(|armed| *armed).await;
        let state = hub.core.lock();
        if let Some(error) = &state.ended {
            return Err(error.clone());
        }
        let feed = state.feed.subscribe();
        // Armed no earlier than what this watcher's client has already seen, as a private
        // watch would be by the member.
        let last_zxid = state.last_zxid.unwrap_or(0).max(client.last_zxid());
        drop(state);
        Ok(SharedFeed {
            _hub: hub,
            feed,
            last_zxid,
        })
    }

    /// The next message after `last_zxid`.
    pub(crate) async fn next(&mut self) -> Next {
        loop {
            match self.feed.recv().await {
                Ok(Ok(message)) if message.zxid <= self.last_zxid => continue,
                Ok(Ok(message)) => {
                    self.last_zxid = message.zxid;
                    return Next::Message(Ok(message));
                }
                Ok(Err(error)) => return Next::Message(Err(error)),
                Err(broadcast::error::RecvError::Lagged(_)) => return Next::Behind,
                // The hub held here keeps a sender alive; treat the impossible as the end.
                Err(broadcast::error::RecvError::Closed) => {
                    return Next::Message(Err(RegistryError::NoQuorum(
                        "the shared watch stopped".to_owned(),
                    )));
                }
            }
        }
    }
}
