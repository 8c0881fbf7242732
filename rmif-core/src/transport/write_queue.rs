//! The coalescing write buffer: every sender appends encoded frames under a short lock, and one
//! writer task moves everything queued to the socket in a single write (or, when the connection
//! is idle, a sender writes it directly; see `Link::flush`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::protocol::OutFrame;
use crate::sync::lock;

/// Frames waiting to be written to one connection.
///
/// Senders never wait for the socket: they encode into the shared buffer and wake the writer,
/// which swaps the buffer for an empty one and writes it whole. Under load many frames leave in
/// one syscall; when idle a frame leaves at once. Two buffers alternate so steady state allocates
/// nothing.
pub(crate) struct WriteQueue {
    state: Mutex<QueueState>,
    writer_wake: Notify,
    space: Notify,
    /// Producers waiting in `wait_for_space`; the writer only notifies when there are any.
    waiting_for_space: AtomicUsize,
    /// Bytes queued, readable without the lock (the check every producer makes first).
    queued_bytes: AtomicUsize,
    high_water: usize,
}

struct QueueState {
    buf: BytesMut,
    closed: bool,
}

impl WriteQueue {
    /// A queue whose senders start waiting (if they use [`WriteQueue::wait_for_space`]) once
    /// `high_water` bytes are buffered.
    pub(crate) fn new(high_water: usize) -> Self {
        WriteQueue {
            state: Mutex::new(QueueState {
                buf: BytesMut::with_capacity(8 * 1024),
                closed: false,
            }),
            writer_wake: Notify::new(),
            space: Notify::new(),
            waiting_for_space: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            high_water,
        }
    }

    /// Appends a frame and wakes the writer if the queue was empty. Returns false if the queue
    /// is closed (the frame is dropped).
    pub(crate) fn push(&self, frame: &OutFrame<'_>) -> bool {
        match self.push_quietly(frame) {
            Some(true) => {
                self.writer_wake.notify_one();
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    /// Appends a frame without waking the writer, for a sender that flushes itself. Returns
    /// whether the queue was empty before, or `None` if it is closed.
    pub(crate) fn push_quietly(&self, frame: &OutFrame<'_>) -> Option<bool> {
        let mut state = lock(&self.state);
        if state.closed {
            return None;
        }
        let was_empty = state.buf.is_empty();
        frame.encode(&mut state.buf);
        self.queued_bytes.store(state.buf.len(), Ordering::SeqCst);
        Some(was_empty)
    }

    /// Writes what is queued to `io` without waiting: as much as the socket takes now. The
    /// caller must hold the connection's write permission (see `Link`). Returns true when
    /// everything was written.
    ///
    /// The lock is not held during the system call: senders finishing on other threads
    /// meanwhile queue their frames behind the ones being written instead of sleeping on it.
    pub(crate) fn write_now(&self, io: &OwnedWriteHalf) -> std::io::Result<bool> {
        let mut writing = {
            let mut state = lock(&self.state);
            if state.buf.is_empty() {
                return Ok(true);
            }
            // The queued bytes, cheaply: the rest of the allocation stays the queue's, and
            // becomes whole again once these are written and dropped.
            state.buf.split()
        };
        let mut outcome = Ok(());
        while !writing.is_empty() {
            match io.try_write(&writing) {
                Ok(0) => {
                    outcome = Err(std::io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(written) => writing.advance(written),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        let mut state = lock(&self.state);
        if !writing.is_empty() {
            // What the socket did not take goes back in front of what was queued meanwhile.
            writing.unsplit(state.buf.split());
            state.buf = writing;
        }
        self.queued_bytes.store(state.buf.len(), Ordering::SeqCst);
        outcome.map(|()| state.buf.is_empty())
    }

    /// How many bytes are queued.
    pub(crate) fn len(&self) -> usize {
        self.queued_bytes.load(Ordering::SeqCst)
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued_bytes.load(Ordering::SeqCst) == 0
    }

    /// Wakes the writer task.
    pub(crate) fn wake_writer(&self) {
        self.writer_wake.notify_one();
    }

    /// Waits until fewer than the high-water mark of bytes are buffered (or the queue closes).
    /// Producers that can be slowed down call this before [`WriteQueue::push`] so that a peer
    /// that stops reading cannot make this process buffer without bound.
    pub(crate) async fn wait_for_space(&self) {
        if self.queued_bytes.load(Ordering::Relaxed) < self.high_water {
            return;
        }
        self.waiting_for_space.fetch_add(1, Ordering::SeqCst);
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_space() {
                break;
            }
            notified.await;
        }
        self.waiting_for_space.fetch_sub(1, Ordering::SeqCst);
    }

    fn has_space(&self) -> bool {
        let state = lock(&self.state);
        state.closed || state.buf.len() < self.high_water
    }

    /// Moves everything queued into `spare` (which must be empty). Returns false when nothing was
    /// queued.
    pub(crate) fn take(&self, spare: &mut BytesMut) -> bool {
        debug_assert!(spare.is_empty());
        let mut state = lock(&self.state);
        if state.buf.is_empty() {
            return false;
        }
        std::mem::swap(&mut state.buf, spare);
        self.queued_bytes.store(0, Ordering::SeqCst);
        drop(state);
        if self.waiting_for_space.load(Ordering::SeqCst) > 0 {
            self.space.notify_waiters();
        }
        true
    }

    /// Resolves when a sender queued a frame into an empty queue.
    pub(crate) async fn queued(&self) {
        self.writer_wake.notified().await
    }

    /// Refuses further frames; those already queued can still be taken.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.queued_bytes.store(0, Ordering::SeqCst);
        self.space.notify_waiters();
        self.writer_wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FrameHeader, FrameKind};

    fn heartbeat(id: u64) -> OutFrame<'static> {
        OutFrame::new(FrameHeader::new(FrameKind::Heartbeat, id), b"")
    }

    #[test]
    fn frames_queued_together_leave_together() {
        let queue = WriteQueue::new(1 << 20);
        assert!(queue.push(&heartbeat(1)));
        assert!(queue.push(&heartbeat(2)));
        let mut spare = BytesMut::new();
        assert!(queue.take(&mut spare));
        assert_eq!(spare.len(), 2 * heartbeat(1).encoded_len());
        spare.clear();
        assert!(!queue.take(&mut spare));
    }

    #[test]
    fn closed_queue_refuses_frames() {
        let queue = WriteQueue::new(1 << 20);
        queue.close();
        assert!(!queue.push(&heartbeat(1)));
    }

    /// A direct write that the socket takes only part of leaves the rest in front of the
    /// frames queued while it wrote: the peer reads every frame once, in queue order.
    #[tokio::test]
    async fn a_partial_direct_write_keeps_the_queue_order() {
        use futures_util::StreamExt;
        use tokio_util::codec::FramedRead;

        use crate::protocol::FrameCodec;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sender = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&sender)
            .set_send_buffer_size(4096)
            .unwrap();
        let (_read_half, io) = sender.into_split();
        let queue = WriteQueue::new(usize::MAX);

        fn response(id: u64, body: &[u8]) -> OutFrame<'_> {
            OutFrame::new(FrameHeader::new(FrameKind::Response, id), body)
        }
        // Far more than the socket buffers while nobody reads: the first write is partial.
        let big = vec![7u8; 8 * 1024 * 1024];
        queue.push_quietly(&response(1, &big));
        assert!(
            !queue.write_now(&io).unwrap(),
            "the socket took 8 MiB at once"
        );
        queue.push_quietly(&response(2, b"after"));

        let reading = tokio::spawn(async move {
            let mut frames = FramedRead::new(receiver, FrameCodec::new(16 * 1024 * 1024));
            let mut seen = Vec::new();
            while seen.len() < 2 {
                let frame = frames.next().await.unwrap().unwrap();
                seen.push((frame.header.request_id, frame.body.len()));
            }
            seen
        });
        while !queue.write_now(&io).unwrap() {
            io.writable().await.unwrap();
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(20), reading)
            .await
            .expect("the peer read both frames")
            .unwrap();
        assert_eq!(seen, vec![(1, big.len()), (2, b"after".len())]);
    }

    #[tokio::test]
    async fn senders_wait_above_high_water_until_the_writer_takes() {
        let queue = std::sync::Arc::new(WriteQueue::new(10));
        queue.push(&heartbeat(1));
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.wait_for_space().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let mut spare = BytesMut::new();
        assert!(queue.take(&mut spare));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("sender released once the buffer drained")
            .unwrap();
    }
}
