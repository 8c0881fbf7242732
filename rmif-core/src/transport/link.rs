//! One TCP connection's shared half: the write queue, the writer task with its heartbeats, and
//! the reason the connection closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::codec::FramedRead;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::write_queue::WriteQueue;
use crate::protocol::{Frame, FrameCodec, FrameHeader, FrameKind, OutFrame};
use crate::sync::lock;

/// Bytes buffered for one connection before producers that can wait are made to wait.
const WRITE_HIGH_WATER: usize = 8 * 1024 * 1024;
/// A write buffer that grew past this is released after use instead of kept.
const MAX_RETAINED_BUFFER: usize = 1024 * 1024;
/// How long a closing connection may spend flushing frames queued before the close.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(1);
/// Initial capacity of the read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// Heartbeat settings of a connection (`Tick_time` and `Again_time` in configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// An idle connection sends a heartbeat this often.
    pub(crate) tick: Duration,
    /// The connection closes after this many ticks in a row without any frame from the peer.
    pub(crate) again: u32,
}

/// The shared half of one connection. Readers own the [`FramedRead`] returned beside it.
pub(crate) struct Link {
    queue: WriteQueue,
    peer: SocketAddr,
    heard_from_peer: AtomicBool,
    closed: AtomicBool,
    close_signal: CancellationToken,
    close_reason: Mutex<Option<String>>,
}

/// Sets the socket up, starts the writer task and returns the link and its frame reader.
pub(crate) fn open_link(
    stream: TcpStream,
    liveness: Liveness,
    max_frame_size: usize,
) -> std::io::Result<(Arc<Link>, FramedRead<OwnedReadHalf, FrameCodec>)> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let (read_half, write_half) = stream.into_split();
    let link = Arc::new(Link {
        queue: WriteQueue::new(WRITE_HIGH_WATER),
        peer,
        heard_from_peer: AtomicBool::new(true),
        closed: AtomicBool::new(false),
        close_signal: CancellationToken::new(),
        close_reason: Mutex::new(None),
    });
    tokio::spawn(run_writer(link.clone(), write_half, liveness));
    let reader = FramedRead::with_capacity(read_half, FrameCodec::new(max_frame_size), READ_BUFFER);
    Ok((link, reader))
}

impl Link {
    /// The remote address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Queues a frame. Returns false if the connection is closed.
    pub(crate) fn send(&self, frame: &OutFrame<'_>) -> bool {
        self.queue.push(frame)
    }

    /// Queues a frame once the write buffer has room. Returns false if the connection is closed.
    pub(crate) async fn send_when_ready(&self, frame: &OutFrame<'_>) -> bool {
        self.queue.wait_for_space().await;
        self.queue.push(frame)
    }

    /// Waits until the write buffer has room (or the connection closed).
    pub(crate) async fn ready(&self) {
        self.queue.wait_for_space().await
    }

    /// Records that a frame arrived; called by the reader for every frame.
    pub(crate) fn heard_from_peer(&self) {
        self.heard_from_peer.store(true, Ordering::Relaxed);
    }

    /// Answers connection-level frames common to both sides. Returns true if `frame` was one.
    pub(crate) fn handle_liveness_frame(&self, frame: &Frame) -> bool {
        match frame.header.kind {
            FrameKind::Heartbeat => {
                self.send(&OutFrame::new(
                    FrameHeader::new(FrameKind::HeartbeatAck, frame.header.request_id),
                    b"",
                ));
                true
            }
            FrameKind::HeartbeatAck => true,
            _ => false,
        }
    }

    /// Closes the connection: no more frames are accepted, queued ones are flushed briefly, then
    /// the socket is shut down. The first reason given is kept.
    pub(crate) fn close(&self, reason: impl Into<String>) {
        {
            let mut slot = lock(&self.close_reason);
            if slot.is_none() {
                *slot = Some(reason.into());
            }
        }
        self.closed.store(true, Ordering::SeqCst);
        self.queue.close();
        self.close_signal.cancel();
    }

    /// True once [`Link::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Why the connection closed ("open" while it is not closed).
    pub(crate) fn close_reason(&self) -> String {
        lock(&self.close_reason)
            .clone()
            .unwrap_or_else(|| "open".to_owned())
    }

    /// Resolves once the connection is closed.
    pub(crate) fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.close_signal.cancelled()
    }
}

async fn run_writer(link: Arc<Link>, mut io: OwnedWriteHalf, liveness: Liveness) {
    let mut spare = BytesMut::with_capacity(8 * 1024);
    let mut ticker = interval_at(Instant::now() + liveness.tick, liveness.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut wrote_since_tick = false;
    let mut silent_ticks = 0;
    loop {
        while link.queue.take(&mut spare) {
            if let Err(error) = io.write_all(&spare).await {
                link.close(format!("write to {} failed: {error}", link.peer));
                return;
            }
            wrote_since_tick = true;
            spare.clear();
            if spare.capacity() > MAX_RETAINED_BUFFER {
                spare = BytesMut::with_capacity(8 * 1024);
            }
        }
        if link.is_closed() {
            break;
        }
        // Queued frames first: a busy connection then never polls the other branches (closing
        // also wakes the writer through the queue).
        tokio::select! {
            biased;
            _ = link.queue.queued() => {}
            _ = link.closed() => break,
            _ = ticker.tick() => {
                if link.heard_from_peer.swap(false, Ordering::Relaxed) {
                    silent_ticks = 0;
                } else {
                    silent_ticks += 1;
                    if silent_ticks >= liveness.again {
                        link.close(format!(
                            "no frame from {} for {} heartbeat intervals of {} ms",
                            link.peer,
                            liveness.again,
                            liveness.tick.as_millis()
                        ));
                        break;
                    }
                }
                if !wrote_since_tick {
                    link.send(&OutFrame::new(FrameHeader::new(FrameKind::Heartbeat, 0), b""));
                }
                wrote_since_tick = false;
            }
        }
    }
    // Flush what was queued before the close (a go-away, final responses), but never wait long
    // on a peer that does not read.
    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, async {
        while link.queue.take(&mut spare) {
            io.write_all(&spare).await?;
            spare.clear();
        }
        io.shutdown().await
    })
    .await;
}
