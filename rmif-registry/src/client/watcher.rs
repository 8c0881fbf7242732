//! A client watch that survives failovers: when its stream breaks it reopens on a member that
//! answers, asking for the changes after the last zxid it delivered, so the application sees
//! every change once, in order, or an explicit resync.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RegistryClient;
use crate::api::{Registry, WatchMessage, WatchMode, WatchRequest};
use crate::error::RegistryError;

/// Messages buffered for the application before the watch stops reading (the registry then
/// cuts it off, and it resumes from its last zxid: nothing is lost, only delayed).
const BUFFER: usize = 1024;

/// Changes of a watched node. Ends after the first change for one-shot modes.
pub struct Watcher {
    armed: Option<WatchMessage>,
    messages: mpsc::Receiver<Result<WatchMessage, RegistryError>>,
    stop: CancellationToken,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
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
        let (tx, mut messages) = mpsc::channel(BUFFER);
        let stop = CancellationToken::new();
        tokio::spawn(follow(client, path.to_owned(), mode, tx, stop.clone()));
        let armed = messages.recv().await.ok_or_else(|| {
            RegistryError::NoQuorum("the watch stopped before it was armed".to_owned())
        })??;
        Ok(Watcher {
            armed: Some(armed),
            messages,
            stop,
        })
    }

    /// The next message: armed (no events), changes of one zxid, or a resync. `None` once a
    /// one-shot watch fired or the watch ended with an error already returned.
    pub async fn next(&mut self) -> Option<Result<WatchMessage, RegistryError>> {
        if let Some(armed) = self.armed.take() {
            return Some(Ok(armed));
        }
        self.messages.recv().await
    }
}

async fn follow(
    client: RegistryClient,
    path: String,
    mode: WatchMode,
    out: mpsc::Sender<Result<WatchMessage, RegistryError>>,
    stop: CancellationToken,
) {
    let members = client.member_count().max(1);
    let mut member = client.preferred();
    let mut since: Option<u64> = None;
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
                let _ = out.send(Err(error)).await;
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
                    if out.send(Ok(message)).await.is_err() || fired {
                        return;
                    }
                }
                Some(Err(error)) if error.is_retryable() => {
                    tracing::debug!(%path, %error, "watch interrupted; resuming");
                    break;
                }
                Some(Err(error)) => {
                    let _ = out.send(Err(error)).await;
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
