//! Reading one watch from the registry without a gap: the stream is opened through the
//! client's failover loop, and when it breaks it is opened again, on the next member, asking for
//! the changes after the last zxid delivered. What it reads goes to an [`Outlet`]: one watcher's
//! channel, or a stream shared by a client's watchers.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::WatchOptions;
use crate::api::{Registry, WatchMessage, WatchRequest};
use crate::client::RegistryClient;
use crate::client::failover::{self, Plan, Retry};
use crate::error::RegistryError;

/// Where [`follow`] delivers what it reads.
pub(crate) trait Outlet: Send + Sync + 'static {
    /// Delivers a message; false once no one is listening.
    fn deliver(
        &self,
        message: Result<WatchMessage, RegistryError>,
    ) -> impl Future<Output = bool> + Send;
}

/// One watcher's channel: sending waits for room, so the watcher's pace is the stream's.
impl Outlet for mpsc::Sender<Result<WatchMessage, RegistryError>> {
    async fn deliver(&self, message: Result<WatchMessage, RegistryError>) -> bool {
        self.send(message).await.is_ok()
    }
}

/// Reads the watch of `path`, from the changes after `since` if given (else from now), opening
/// it again whenever its stream breaks, until `stop` or a failure that no other member can mend.
pub(crate) async fn follow(
    client: RegistryClient,
    path: String,
    options: WatchOptions,
    mut since: Option<u64>,
    out: impl Outlet,
    stop: CancellationToken,
) {
    let mut start = client.preferred();
    loop {
        // Rebuilt for every attempt: a resumed stream asks for what came after the last
        // delivered change, and never for a state older than what the client has seen.
        let plan = Plan {
            start,
            retry: Retry::Retryable,
            deadline: None,
        };
        let open = failover::run(&client, plan, |member| {
            let request = WatchRequest {
                path: path.clone(),
                mode: options.mode,
                since_zxid: since,
                min_zxid: client.last_zxid(),
                with_data: options.with_data,
                // A resumed stream asks for what it missed, not for the state again.
                with_state: options.initial_state && since.is_none(),
            };
            let stub = client.stub(member);
            async move { stub.watch(request).await }
        });
        let opened = tokio::select! {
            opened = open => opened,
            _ = stop.cancelled() => return,
        };
        let (mut stream, member) = match opened {
            Ok(opened) => opened,
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
                    client.observe(message.zxid);
                    if message.is_armed() {
                        if since.is_some() {
                            continue; // re-armed after a resume: nothing new to say
                        }
                    } else if since.is_some_and(|s| message.zxid <= s) {
                        continue; // already delivered before a resume
                    }
                    since = Some(message.zxid);
                    let fired = !message.is_armed() && options.mode.is_one_shot();
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
                None => break,
            }
        }
        // A broken stream usually means its member is gone.
        start = member + 1;
    }
}
