//! One TCP connection's shared half: the write queue, the writer task with its heartbeats, and
//! the reason the connection closed.
//!
//! Frames reach the socket in queue order by one of two ways, never both at once (a `writing`
//! flag decides): the writer task, which coalesces whatever accumulated while it was busy, or,
//! when the connection is idle, the sender itself (`flush`), which saves a task wake-up on every
//! message of a lightly loaded connection. A woken writer task lets the other runnable tasks go
//! first, so that the frames of many senders leave in one write rather than one each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
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
/// A batch of this many queued bytes is worth a write of its own (see [`Link::send_batch`]).
const BATCH_WRITTEN_AT_ONCE: usize = 32 * 1024;
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
    io: OwnedWriteHalf,
    /// Held by whoever writes to `io`: the writer task or a sender flushing directly.
    writing: AtomicBool,
    /// Something was written since the last heartbeat tick.
    wrote: AtomicBool,
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
        io: write_half,
        writing: AtomicBool::new(false),
        wrote: AtomicBool::new(false),
        peer,
        heard_from_peer: AtomicBool::new(true),
        closed: AtomicBool::new(false),
        close_signal: CancellationToken::new(),
        close_reason: Mutex::new(None),
    });
    tokio::spawn(run_writer(link.clone(), liveness));
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

    /// Queues a frame and, if no one is writing to the socket, writes it from this task at once.
    /// Returns false if the connection is closed.
    pub(crate) fn send_and_flush(&self, frame: &OutFrame<'_>) -> bool {
        match self.queue.push_quietly(frame) {
            None => false,
            // Alone in the queue: write it now.
            Some(true) => {
                self.flush();
                true
            }
            // Whoever queued before is writing or flushing, and takes this frame along.
            Some(false) => true,
        }
    }

    /// Queues a frame without writing or waking anyone: the caller then calls [`Link::flush`]
    /// or [`Link::wake_writer`] once it has queued a batch (the provider's reader, after the
    /// frames it received together).
    pub(crate) fn queue(&self, frame: &OutFrame<'_>) -> bool {
        self.queue.push_quietly(frame).is_some()
    }

    /// Hands what is queued to the writer task (under load, so that this task goes back to
    /// reading while the writer writes, on another core).
    pub(crate) fn wake_writer(&self) {
        if !self.queue.is_empty() {
            self.queue.wake_writer();
        }
    }

    /// Sends a batch of frames (the answers to requests that arrived together): a small one
    /// goes to the writer task, which sends it with whatever else the tasks runnable now are
    /// about to send; a large one is already worth its write and is written from here at once.
    pub(crate) fn send_batch(&self) {
        if self.queue.len() >= BATCH_WRITTEN_AT_ONCE {
            self.flush();
        } else {
            self.wake_writer();
        }
    }

    /// Writes what is queued from the calling task if no one else is writing (the writer task
    /// is idle); otherwise leaves it to the one who is. Whatever the socket does not take at
    /// once is left to the writer task.
    pub(crate) fn flush(&self) {
        // SeqCst on the flag and on the queue's size: a sender that finds the flag held has
        // queued its frame before, so the holder's check of the queue after releasing the flag
        // sees it (and writes it or wakes the writer task). No frame is left behind.
        if self.writing.swap(true, Ordering::SeqCst) {
            return;
        }
        let written = self.queue.write_now(&self.io);
        self.writing.store(false, Ordering::SeqCst);
        self.wrote.store(true, Ordering::Relaxed);
        match written {
            Err(error) => self.close(format!("write to {} failed: {error}", self.peer)),
            // Frames queued while the flag was held, or a remainder the socket did not take:
            // the writer task writes them, with whatever else is about to be sent.
            Ok(_) if !self.queue.is_empty() => self.queue.wake_writer(),
            Ok(_) => {}
        }
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

async fn run_writer(link: Arc<Link>, liveness: Liveness) {
    let mut spare = BytesMut::with_capacity(8 * 1024);
    let mut ticker = interval_at(Instant::now() + liveness.tick, liveness.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut silent_ticks = 0;
    loop {
        if !link.writing.swap(true, Ordering::SeqCst) {
            let written = write_queued(&link, &mut spare).await;
            link.writing.store(false, Ordering::SeqCst);
            if let Err(error) = written {
                link.close(format!("write to {} failed: {error}", link.peer));
                return;
            }
            // A sender that found the flag held left its frame queued: take it now rather than
            // wait for its wake-up.
            if !link.queue.is_empty() {
                continue;
            }
        }
        if link.is_closed() {
            break;
        }
        // Queued frames first: a busy connection then never polls the other branches (closing
        // also wakes the writer through the queue).
        tokio::select! {
            biased;
            _ = link.queue.queued() => {
                // Woken by a sender, this task would run next on the sender's thread, before
                // the other tasks already runnable there (often callers or handlers about to
                // send too), and write each frame on its own. Letting the thread run out of
                // work first sends them in one write: a system call per frame is what loopback
                // traffic costs most.
                tokio::task::yield_now().await;
            }
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
                if !link.wrote.swap(false, Ordering::Relaxed) {
                    link.send(&OutFrame::new(FrameHeader::new(FrameKind::Heartbeat, 0), b""));
                }
            }
        }
    }
    // Flush what was queued before the close (a go-away, final responses), but never wait long
    // on a peer that does not read; then half-close so the peer sees the end at once.
    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, async {
        while link.writing.swap(true, Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let flushed = write_queued(&link, &mut spare).await;
        link.writing.store(false, Ordering::SeqCst);
        flushed
    })
    .await;
    let _ = socket2::SockRef::from(link.io.as_ref()).shutdown(std::net::Shutdown::Write);
}

/// Writes everything queued (waiting for the socket as needed). The caller holds `writing`.
async fn write_queued(link: &Link, spare: &mut BytesMut) -> std::io::Result<()> {
    while link.queue.take(spare) {
        while !spare.is_empty() {
            link.io.writable().await?;
            match link.io.try_write(spare) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => spare.advance(written),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        link.wrote.store(true, Ordering::Relaxed);
        spare.clear();
        if spare.capacity() > MAX_RETAINED_BUFFER {
            *spare = BytesMut::with_capacity(8 * 1024);
        }
    }
    Ok(())
}
