//! A client watch that survives failovers: when its stream breaks it reopens on a member that
//! answers, asking for the changes after the last zxid it delivered (`stream`), so the
//! application sees every change once, in order, or an explicit resync. Persistent and
//! recursive watches of one node share one stream per client (`shared`); one-shot watches have
//! their own. `events` turns a watch into plain node events, resyncs included.

mod events;
mod shared;
mod stream;

pub use events::{NodeEvent, WatchEvents};
pub(crate) use shared::SharedWatches;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RegistryClient;
use crate::api::{WatchMessage, WatchMode};
use crate::error::RegistryError;
use shared::{Next, SharedFeed};
use stream::follow;

/// Messages buffered for the application before the watch stops reading (the registry then
/// cuts it off, and it resumes from its last zxid: nothing is lost, only delayed).
const BUFFER: usize = 1024;

/// How a watch follows its node; see [`RegistryClient::watch_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// What of the node it follows.
    pub mode: WatchMode,
    /// Events of created and changed nodes carry the node's data (no read per change).
    pub with_data: bool,
    /// The first message is the watched nodes' state (a resync) instead of a bare armed
    /// message: a list to follow, then only its changes. Persistent and recursive modes only.
    pub initial_state: bool,
}

impl From<WatchMode> for WatchOptions {
    fn from(mode: WatchMode) -> Self {
        WatchOptions {
            mode,
            with_data: false,
            initial_state: false,
        }
    }
}

/// Changes of a watched node. Ends after the first change for one-shot modes.
pub struct Watcher {
    armed: Option<WatchMessage>,
    source: Source,
    client: RegistryClient,
    path: String,
    options: WatchOptions,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("shared", &matches!(self.source, Source::Shared(_)))
            .finish_non_exhaustive()
    }
}

/// Where a watcher's messages come from.
enum Source {
    /// A stream of its own, read by a task that stops when the watcher is dropped.
    Private {
        messages: mpsc::Receiver<Result<WatchMessage, RegistryError>>,
        _stop: StopOnDrop,
    },
    /// The client's shared stream of the same node and mode.
    Shared(SharedFeed),
}

/// Cancels the token when dropped.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Watcher {
    /// Opens the watch and returns once it is armed (its first message, the zxid it starts at,
    /// or the initial state, is the first item [`Watcher::next`] returns).
    pub(crate) async fn start(
        client: RegistryClient,
        path: &str,
        options: WatchOptions,
    ) -> Result<Watcher, RegistryError> {
        // Watches with data or an initial state are private: a shared stream arms each local
        // watcher with a bare message of its own.
        let private = options.mode.is_one_shot() || options.with_data || options.initial_state;
        let (armed, source) = if private {
            let (mut messages, stop) = Self::private(&client, path, options, None);
            let armed = messages.recv().await.ok_or_else(|| {
                RegistryError::NoQuorum("the watch stopped before it was armed".to_owned())
            })??;
            let source = Source::Private {
                messages,
                _stop: stop,
            };
            (armed, source)
        } else {
            let feed = SharedFeed::join(&client, path, options.mode).await?;
            let armed = WatchMessage {
                zxid: feed.last_zxid,
                events: Vec::new(),
                resync: None,
            };
            (armed, Source::Shared(feed))
        };
        Ok(Watcher {
            armed: Some(armed),
            source,
            client,
            path: path.to_owned(),
            options,
        })
    }

    /// Starts a private stream, resuming after `since` if given.
    fn private(
        client: &RegistryClient,
        path: &str,
        options: WatchOptions,
        since: Option<u64>,
    ) -> (
        mpsc::Receiver<Result<WatchMessage, RegistryError>>,
        StopOnDrop,
    ) {
        let (tx, messages) = mpsc::channel(BUFFER);
        let stop = CancellationToken::new();
        tokio::spawn(follow(
            client.clone(),
            path.to_owned(),
            options,
            since,
            tx,
            stop.clone(),
        ));
        (messages, StopOnDrop(stop))
    }

    /// The next message: armed (no events), changes of one zxid, or a resync. `None` once a
    /// one-shot watch fired or the watch ended with an error already returned.
    pub async fn next(&mut self) -> Option<Result<WatchMessage, RegistryError>> {
        if let Some(armed) = self.armed.take() {
            return Some(Ok(armed));
        }
        loop {
            let since = match &mut self.source {
                Source::Private { messages, .. } => return messages.recv().await,
                Source::Shared(feed) => match feed.next().await {
                    Next::Message(message) => return Some(message),
                    Next::Behind => feed.last_zxid,
                },
            };
            // Too slow for the shared stream: go on alone from where this watcher is.
            tracing::debug!(path = %self.path, since, "watcher fell behind its shared stream");
            let (messages, stop) =
                Self::private(&self.client, &self.path, self.options, Some(since));
            self.source = Source::Private {
                messages,
                _stop: stop,
            };
        }
    }
}
