//! A client watch that survives failovers: when its stream breaks it reopens on a member that
//! answers, asking for the changes after the last zxid it delivered, so the application sees
//! every change once, in order, or an explicit resync. Persistent and recursive watches of one
//! node share one stream per client (see `shared_watch`); one-shot watches have their own.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RegistryClient;
use super::shared_watch::{HubCore, Next, SharedFeed};
use crate::api::{Registry, WatchMessage, WatchMode, WatchRequest};
use crate::error::RegistryError;

/// Messages buffered for the application before the watch stops reading (the registry then
/// cuts it off, and it resumes from its last zxid: nothing is lost, only delayed).
const BUFFER: usize = 1024;

/// Changes of a watched node. Ends after the first change for one-shot modes.
pub struct Watcher {
    armed: Option<WatchMessage>,
    source: Source,
    client: RegistryClient,
    path: String,
    mode: WatchMode,
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
    /// is the first item [`Watcher::next`] returns).
    pub(crate) async fn start(
        client: RegistryClient,
        path: &str,
        mode: WatchMode,
    ) -> Result<Watcher, RegistryError> {
        let (armed, source) = if mode.is_one_shot() {
            let (mut messages, stop) = Self::private(&client, path, mode, None);
            let armed = messages.recv().await.ok_or_else(|| {
                RegistryError::NoQuorum("the watch stopped before it was armed".to_owned())
            })??;
            let source = Source::Private {
                messages,
                _stop: stop,
            };
            (armed, source)
        } else {
            let feed = SharedFeed::join(&client, path, mode).await?;
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
            mode,
        })
    }

    /// Starts a private stream, resuming after `since` if given.
    fn private(
        client: &RegistryClient,
        path: &str,
        mode: WatchMode,
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
            mode,
            since,
            Outlet::Private(tx),
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
            let (messages, stop) = Self::private(&self.client, &self.path, self.mode, Some(since));
            self.source = Source::Private {
                messages,
                _stop: stop,
            };
        }
    }
}

/// Where [`follow`] delivers what it reads.
pub(crate) enum Outlet {
    /// One watcher's channel (waits for room: the watcher's pace is the stream's).
    Private(mpsc::Sender<Result<WatchMessage, RegistryError>>),
    /// A shared stream's local watchers.
    Shared(Arc<HubCore>),
}

impl Outlet {
    /// Delivers a message; false once no one is listening.
    async fn deliver(&self, message: Result<WatchMessage, RegistryError>) -> bool {
        match self {
            Outlet::Private(tx) => tx.send(message).await.is_ok(),
            Outlet::Shared(hub) => {
                hub.publish(message);
                true
            }
        }
    }
}

/// Reads the watch of `path`, from the changes after `since` if given (else from now), reopening
/// it on another member whenever its stream breaks, until `stop` or a non-retryable error.
pub(crate) async fn follow(
    client: RegistryClient,
    path: String,
    mode: WatchMode,
    mut since: Option<u64>,
    out: Outlet,
    stop: CancellationToken,
) {
    let members = client.member_count().max(1);
    let mut member = client.preferred();
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let request = WatchRequest {
            path: path.clone(),
            mode,
            since_zxid: since,
            min_zxid: client.last_zxid(),
        };
        let stub = client.stub(member);
        let opened = tokio::select! {
            opened = stub.watch(request) => opened,
            _ = stop.cancelled() => return,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(error) if error.is_retryable() => {
                failures += 1;
                member = (member + 1) % members;
                if failures % members as u32 == 0 {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(20))))
                        .await;
                }
                continue;
            }
            Err(error) => {
                out.deliver(Err(error)).await;
                return;
            }
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = stop.cancelled() => return,
            };
            match item {
                Some(Ok(message)) => {
                    failures = 0;
                    client.observe(message.zxid);
                    if message.is_armed() {
                        if since.is_some() {
                            continue; // re-armed after a resume: nothing new to say
                        }
                    } else if since.is_some_and(|s| message.zxid <= s) {
                        continue; // already delivered before a resume
                    }
                    since = Some(message.zxid);
                    let fired = !message.is_armed() && mode.is_one_shot();
                    if !out.deliver(Ok(message)).await || fired {
                        return;
                    }
                }
                Some(Err(error)) if error.is_retryable() => {
                    tracing::debug!(%path, %error, "watch interrupted; resuming");
                    break;
                }
                Some(Err(error)) => {
                    out.deliver(Err(error)).await;
                    return;
                }
                // The member ended the stream (it is shutting down): resume elsewhere.
                None => {
                    member = (member + 1) % members;
                    break;
                }
            }
        }
        // A broken stream usually means the member is gone.
        member = (member + 1) % members;
    }
}
