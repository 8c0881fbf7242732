//! The consumer's half of one connection: calls waiting for an answer, by request id, and the
//! reader task that completes them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::codec::FramedRead;

use crate::Error;
use crate::protocol::{Frame, FrameCodec, FrameHeader, FrameKind, OutFrame};
use crate::sync::{IdMap, lock};
use crate::transport::{Link, Liveness, open_link};

/// Where a frame for a request id goes.
pub(crate) enum Pending {
    /// A unary call: the one response.
    Unary(oneshot::Sender<Frame>),
    /// A server stream: the opening response, items and the end.
    Stream(mpsc::Sender<Frame>),
}

/// One connection from this consumer to one provider.
pub(crate) struct ClientConnection {
    link: Arc<Link>,
    pending: Mutex<IdMap<Pending>>,
    next_id: AtomicU64,
    going_away: AtomicBool,
    go_away: Notify,
    max_frame_size: usize,
}

impl ClientConnection {
    /// Takes over a connected socket and starts its reader and writer tasks.
    pub(crate) fn start(
        stream: TcpStream,
        liveness: Liveness,
        max_frame_size: usize,
    ) -> std::io::Result<Arc<Self>> {
        let (link, reader) = open_link(stream, liveness, max_frame_size)?;
        let connection = Arc::new(ClientConnection {
            link,
            pending: Mutex::new(IdMap::default()),
            next_id: AtomicU64::new(1),
            going_away: AtomicBool::new(false),
            go_away: Notify::new(),
            max_frame_size,
        });
        tokio::spawn(read_loop(connection.clone(), reader));
        Ok(connection)
    }

    /// The provider's address.
    pub(crate) fn peer(&self) -> std::net::SocketAddr {
        self.link.peer()
    }

    /// The largest body this connection accepts (also the decompression cap).
    pub(crate) fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// False once the connection closed or the provider said go-away.
    pub(crate) fn is_usable(&self) -> bool {
        !self.link.is_closed() && !self.going_away.load(Ordering::Acquire)
    }

    /// Resolves when the connection closes or the provider says go-away.
    pub(crate) async fn unusable(&self) {
        let go_away = self.go_away.notified();
        tokio::pin!(go_away);
        go_away.as_mut().enable();
        if !self.is_usable() {
            return;
        }
        tokio::select! {
            _ = go_away => {}
            _ = self.link.closed() => {}
        }
    }

    /// A fresh request id.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers where the answers to `id` go. Fails (registering nothing) if the connection is
    /// already closed, so that no caller waits on a connection whose pending calls were drained.
    pub(crate) fn register(&self, id: u64, pending: Pending) -> Result<(), ()> {
        lock(&self.pending).insert(id, pending);
        // The reader marks the link closed before it drains the map, so either it drains this
        // entry or this check sees the close.
        if self.link.is_closed() {
            self.forget(id);
            return Err(());
        }
        Ok(())
    }

    /// Stops routing answers for `id`. Returns true if it was still pending.
    pub(crate) fn forget(&self, id: u64) -> bool {
        let mut pending = lock(&self.pending);
        let removed = pending.remove(&id).is_some();
        self.close_if_drained(&pending);
        removed
    }

    /// After a go-away, the consumer closes the connection once nothing is pending on it: the
    /// provider waits for that (within its grace period), so a request that crossed the go-away
    /// on the wire is refused as "shutting down" (and retried elsewhere) instead of being lost
    /// with a closing connection.
    fn close_if_drained(&self, pending: &IdMap<Pending>) {
        if pending.is_empty() && self.going_away.load(Ordering::Acquire) {
            self.link
                .close("the provider sent go-away and every call was answered");
        }
    }

    /// Abandons call `id`: forgets it and tells the provider to stop working on it.
    pub(crate) fn cancel(&self, id: u64) {
        if self.forget(id) {
            self.link
                .send(&OutFrame::new(FrameHeader::new(FrameKind::Cancel, id), b""));
        }
    }

    /// Queues a frame once the write buffer has room. A call that is alone on the connection
    /// (`alone`) writes it at once from the calling task, saving the writer task's wake-up;
    /// otherwise the writer task coalesces it with the others. Returns false if the connection
    /// closed.
    pub(crate) async fn send(&self, frame: &OutFrame<'_>, alone: bool) -> bool {
        self.link.ready().await;
        if alone {
            self.link.send_and_flush(frame)
        } else {
            self.link.send(frame)
        }
    }

    /// Queues a frame without waiting for buffer room (control frames).
    pub(crate) fn send_now(&self, frame: &OutFrame<'_>) -> bool {
        self.link.send(frame)
    }

    /// Why the connection stopped working, for errors.
    pub(crate) fn close_reason(&self) -> String {
        if self.going_away.load(Ordering::Acquire) && !self.link.is_closed() {
            "the provider is shutting down (go-away)".to_owned()
        } else {
            self.link.close_reason()
        }
    }

    /// The error for a call whose connection broke after it was sent.
    pub(crate) fn lost(&self) -> Error {
        Error::ConnectionLost {
            endpoint: self.link.peer().to_string(),
            reason: self.close_reason(),
        }
    }

    /// The error for a call that could not be sent at all.
    pub(crate) fn not_sent(&self) -> Error {
        Error::Unavailable {
            endpoint: self.link.peer().to_string(),
            reason: self.close_reason(),
        }
    }

    /// Closes the connection, failing every pending call.
    pub(crate) fn close(&self, reason: &str) {
        self.link.close(reason);
    }

    fn route(&self, frame: Frame) {
        let id = frame.header.request_id;
        let mut pending = lock(&self.pending);
        match frame.header.kind {
            FrameKind::Response => match pending.remove(&id) {
                Some(Pending::Unary(tx)) => {
                    self.close_if_drained(&pending);
                    drop(pending);
                    let _ = tx.send(frame);
                }
                Some(Pending::Stream(tx)) => {
                    // An opening "ok" keeps the stream registered; a refusal ends it.
                    if frame.header.status == 0 {
                        pending.insert(id, Pending::Stream(tx.clone()));
                    }
                    self.close_if_drained(&pending);
                    drop(pending);
                    let _ = tx.try_send(frame);
                }
                None => tracing::trace!(id, "response for a call no longer waiting"),
            },
            FrameKind::StreamItem => {
                if let Some(Pending::Stream(tx)) = pending.get(&id)
                    && tx.try_send(frame).is_err()
                {
                    // The provider sent past the credit it was given (or the consumer is
                    // gone): end this stream rather than buffer without bound.
                    pending.remove(&id);
                    self.close_if_drained(&pending);
                    drop(pending);
                    tracing::warn!(
                        peer = %self.link.peer(),
                        id,
                        "provider overran the stream window; stream cancelled"
                    );
                    self.link
                        .send(&OutFrame::new(FrameHeader::new(FrameKind::Cancel, id), b""));
                }
            }
            FrameKind::StreamEnd => {
                if let Some(Pending::Stream(tx)) = pending.remove(&id) {
                    self.close_if_drained(&pending);
                    drop(pending);
                    let _ = tx.try_send(frame);
                }
            }
            _ => unreachable!("route is only called for provider answers"),
        }
    }
}

async fn read_loop(
    connection: Arc<ClientConnection>,
    mut reader: FramedRead<OwnedReadHalf, FrameCodec>,
) {
    let link = connection.link.clone();
    loop {
        // The reader comes first so that a busy connection never pays for the other branch.
        let frame = tokio::select! {
            biased;
            frame = reader.next() => frame,
            _ = link.closed() => break,
        };
        match frame {
            Some(Ok(frame)) => {
                link.heard_from_peer();
                match frame.header.kind {
                    FrameKind::Response | FrameKind::StreamItem | FrameKind::StreamEnd => {
                        connection.route(frame)
                    }
                    FrameKind::GoAway => {
                        connection.going_away.store(true, Ordering::Release);
                        connection.go_away.notify_waiters();
                        tracing::debug!(peer = %link.peer(), "provider sent go-away");
                        connection.close_if_drained(&lock(&connection.pending));
                    }
                    FrameKind::Heartbeat | FrameKind::HeartbeatAck => {
                        link.handle_liveness_frame(&frame);
                    }
                    other => {
                        let reason =
                            format!("provider sent a {other:?} frame, which only consumers send");
                        tracing::warn!(peer = %link.peer(), "{reason}; closing the connection");
                        link.close(reason);
                        break;
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(peer = %link.peer(), %error, "closing connection to provider");
                link.close(error.to_string());
                break;
            }
            None => {
                link.close("the provider closed the connection");
                break;
            }
        }
    }
    // Dropping every sender fails every waiting call at once with "connection lost".
    let drained = std::mem::take(&mut *lock(&connection.pending));
    drop(drained);
}
