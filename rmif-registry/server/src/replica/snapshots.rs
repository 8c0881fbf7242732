//! Snapshots of this member's tree: when to take one, and the one being made. A snapshot
//! received from the leader is installed by [`super::install`].
//!
//! A snapshot is due once enough entries, or enough bytes of them, were appended to the log
//! since the last one: the count bounds a restart's replay, the bytes the log's size on disk.
//! The tree is cloned (cheap: its maps are persistent), then serialized and written to its file
//! on a thread of its own, so that neither the driver nor the storage thread waits for it:
//! writes go on while a snapshot of a large tree is made. The storage thread then only appends
//! the record that names the file (and drops the log it covers).

use std::time::{Duration, Instant};

use raft::prelude::{ConfState, Entry, Snapshot};
use tokio::sync::mpsc;

use crate::error::ServerError;
use crate::storage::SnapshotWriter;
use crate::tree::Tree;

/// Makes the calling thread yield the CPU to every other thread of the machine. Serializing a
/// tree of a million nodes takes seconds of CPU, on every member at about the same time: at
/// normal priority it starves the threads that commit writes, where members share cores.
/// Decoding a received snapshot costs about as much.
pub(super) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id; a failure only leaves the priority
    // as it was.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 19);
    }
}

/// Drops `garbage` on a thread of its own: freeing a large tree or a hundred thousand entries
/// takes milliseconds the driver should not spend.
pub(super) fn free<T: Send + 'static>(garbage: T) {
    // Should the thread not start, the closure (and `garbage` in it) is dropped here after all.
    let _ = std::thread::Builder::new()
        .name("rmif-free".to_owned())
        .spawn(move || drop(garbage));
}

/// A snapshot that could not be written is tried again after this long.
const RETRY_AFTER_FAILURE: std::time::Duration = Duration::from_secs(10);

/// When a snapshot is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Entries appended since the last snapshot.
    pub entries: u64,
    /// Bytes of entry data appended since the last snapshot.
    pub log_bytes: u64,
}

/// A snapshot made on the snapshot thread, and how long its two steps took.
pub struct MadeSnapshot {
    pub snapshot: Snapshot,
    /// Serializing the tree.
    pub serialize_took: Duration,
    /// Writing its file durably (zero if the store writes it itself).
    pub write_took: Duration,
}

/// A snapshot made on the snapshot thread, or why it could not be written.
pub type Made = Result<MadeSnapshot, ServerError>;

/// This member's snapshots.
pub struct Snapshots {
    policy: SnapshotPolicy,
    /// Index of the latest snapshot, taken here or received.
    last: u64,
    /// Size of the latest snapshot this member made (the next one is about as large).
    last_bytes: usize,
    /// Bytes of entry data appended to the log since the latest snapshot started.
    appended_bytes: u64,
    /// A snapshot of the tree is being made.
    making: bool,
    /// When the latest snapshot of the tree was started.
    started: Instant,
    /// When the latest attempt failed, if it did.
    failed_at: Option<Instant>,
    /// Writes the snapshot's file on the snapshot thread, if the store keeps snapshots as files.
    writer: Option<SnapshotWriter>,
    /// Where made snapshots come back.
    made: mpsc::UnboundedSender<Made>,
    /// The buffer of a snapshot no longer needed, for the next one to serialize into.
    spare: SpareBuffer,
}

/// One buffer handed from the snapshot a new one replaced to the snapshot after it.
#[derive(Clone, Default)]
struct SpareBuffer(std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>);

impl SpareBuffer {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn put(&self, buffer: Vec<u8>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(buffer);
    }
}

impl Snapshots {
    /// Snapshots by `policy`, the latest at `last`, their files written by `writer` (if any);
    /// made ones come back on the returned receiver.
    pub fn new(
        policy: SnapshotPolicy,
        last: u64,
        writer: Option<SnapshotWriter>,
    ) -> (Self, mpsc::UnboundedReceiver<Made>) {
        let (made, receiver) = mpsc::unbounded_channel();
        let snapshots = Snapshots {
            policy,
            last,
            last_bytes: 0,
            appended_bytes: 0,
            making: false,
            started: Instant::now(),
            failed_at: None,
            writer,
            made,
            spare: SpareBuffer::default(),
        };
        (snapshots, receiver)
    }

    /// Index of the latest snapshot.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Entries carrying `bytes` of data were appended to the log.
    pub fn on_appended(&mut self, bytes: u64) {
        self.appended_bytes += bytes;
    }

    /// Enough entries applied, or bytes appended, since the last snapshot, and none is being
    /// made.
    pub fn due(&self, applied: u64) -> bool {
        !self.making
            && self
                .failed_at
                .is_none_or(|at| at.elapsed() >= RETRY_AFTER_FAILURE)
            && applied > self.last
            && (applied >= self.last + self.policy.entries
                || self.appended_bytes >= self.policy.log_bytes)
    }

    /// Serializes `tree`, applied through `index` (of `term`), and writes its file, on a thread
    /// of its own; the snapshot comes back on the receiver [`Snapshots::new`] returned.
    pub fn start(&mut self, tree: Tree, index: u64, term: u64, conf_state: ConfState) {
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(conf_state);
        let made = self.made.clone();
        let writer = self.writer.clone();
        let capacity = self.last_bytes + self.last_bytes / 8;
        let spare = self.spare.clone();
        self.making = true;
        self.appended_bytes = 0;
        self.started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("rmif-snapshot".to_owned())
            .spawn(move || {
                lower_priority();
                let serializing = Instant::now();
                let mut buffer = spare.take().unwrap_or_default();
                buffer.clear();
                buffer.reserve(capacity);
                snapshot.data = bytes::Bytes::from(tree.to_snapshot_into(buffer));
                let serialize_took = serializing.elapsed();
                let writing = Instant::now();
                let written = match &writer {
                    Some(writer) => writer.write(&snapshot),
                    None => Ok(()),
                };
                let write_took = writing.elapsed();
                let _ = made.send(written.map(|()| MadeSnapshot {
                    snapshot,
                    serialize_took,
                    write_took,
                }));
            });
        if let Err(source) = spawned {
            let _ = self.made.send(Err(ServerError::Thread {
                name: "snapshot",
                source,
            }));
        }
    }

    /// How long ago the latest snapshot of the tree was started (the time it took to make,
    /// once it came back).
    pub fn making_for(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A snapshot was made. Returns it if it should compact the log: not if one from the
    /// leader, at `log_snapshot` or later, replaced the log meanwhile.
    pub fn on_made(&mut self, snapshot: Snapshot, log_snapshot: u64) -> Option<Snapshot> {
        self.making = false;
        let index = snapshot.get_metadata().index;
        if index <= log_snapshot {
            return None;
        }
        self.last = index;
        self.last_bytes = snapshot.data.len();
        self.failed_at = None;
        Some(snapshot)
    }

    /// Frees, on a thread of its own, the log entries a new snapshot compacted and the snapshot
    /// it replaced, keeping that one's buffer for the next snapshot if nothing else holds it
    /// (a snapshot being sent to a follower does, for a while). Freeing a hundred thousand
    /// entries takes milliseconds the driver should not spend.
    /// Returns the thread's handle (tests wait for it; the driver does not).
    pub fn recycle(
        &self,
        entries: Vec<Entry>,
        replaced: Snapshot,
    ) -> Option<std::thread::JoinHandle<()>> {
        let spare = self.spare.clone();
        std::thread::Builder::new()
            .name("rmif-free".to_owned())
            .spawn(move || {
                drop(entries);
                if let Ok(buffer) = replaced.data.try_into_mut() {
                    spare.put(buffer.into());
                }
            })
            .ok()
    }

    /// A snapshot could not be made (its file could not be written); another is tried after a
    /// pause, so that a full disk is not hammered with one attempt per write.
    pub fn on_failed(&mut self) {
        self.making = false;
        self.failed_at = Some(Instant::now());
    }

    /// A snapshot at `index` from the leader replaced the log (its tree is being installed).
    pub fn on_received(&mut self, index: u64) {
        self.last = index;
        self.appended_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: u64, log_bytes: u64) -> SnapshotPolicy {
        SnapshotPolicy { entries, log_bytes }
    }

    fn made_at(index: u64) -> Snapshot {
        let mut made = Snapshot::default();
        made.mut_metadata().index = index;
        made
    }

    #[test]
    fn a_snapshot_is_due_every_so_many_entries_and_one_at_a_time() {
        let (mut snapshots, _made) = Snapshots::new(policy(100, u64::MAX), 50, None);
        assert!(!snapshots.due(149));
        assert!(snapshots.due(150));
        snapshots.making = true;
        assert!(!snapshots.due(400), "one is being made");
        assert!(snapshots.on_made(made_at(150), 0).is_some());
        assert_eq!(snapshots.last(), 150);
        assert!(!snapshots.due(249) && snapshots.due(250));
    }

    #[test]
    fn a_snapshot_is_due_once_the_log_grew_by_so_many_bytes() {
        let (mut snapshots, _made) = Snapshots::new(policy(1000, 4096), 0, None);
        snapshots.on_appended(4000);
        assert!(!snapshots.due(10));
        snapshots.on_appended(96);
        assert!(snapshots.due(10), "4096 bytes appended after 10 entries");
        assert!(!snapshots.due(0), "nothing applied since the last snapshot");
        snapshots.on_received(10);
        assert!(
            !snapshots.due(11),
            "a received snapshot starts the count again"
        );
    }

    #[test]
    fn a_failed_snapshot_is_not_retried_at_once() {
        let (mut snapshots, _made) = Snapshots::new(policy(10, u64::MAX), 0, None);
        snapshots.making = true;
        snapshots.on_failed();
        assert!(!snapshots.due(100), "retried only after a pause");
        snapshots.failed_at = Some(Instant::now() - RETRY_AFTER_FAILURE);
        assert!(snapshots.due(100));
    }

    #[test]
    fn a_snapshot_overtaken_by_one_from_the_leader_is_dropped() {
        let (mut snapshots, _made) = Snapshots::new(policy(10, u64::MAX), 0, None);
        snapshots.making = true;
        snapshots.on_received(40);
        assert!(snapshots.on_made(made_at(30), 40).is_none());
        assert_eq!(snapshots.last(), 40);
        assert!(snapshots.due(50), "making ended all the same");
    }

    #[test]
    fn a_replaced_snapshot_lends_its_buffer_to_the_next_unless_it_is_still_shared() {
        let (snapshots, _made) = Snapshots::new(policy(10, u64::MAX), 0, None);
        let mut replaced = made_at(5);
        replaced.data = Vec::with_capacity(1 << 20).into();
        let freeing = snapshots.recycle(vec![Entry::default(); 3], replaced);
        freeing.unwrap().join().unwrap();
        let spare = snapshots.spare.take().expect("the buffer comes back");
        assert!(spare.capacity() >= 1 << 20);

        let mut shared = made_at(6);
        shared.data = vec![1u8; 4096].into();
        let sending = shared.data.clone();
        snapshots
            .recycle(Vec::new(), shared)
            .unwrap()
            .join()
            .unwrap();
        assert!(snapshots.spare.take().is_none(), "still being sent");
        drop(sending);
    }

    #[tokio::test]
    async fn a_started_snapshot_comes_back_with_the_tree_and_its_file_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::WalStore::open(dir.path()).unwrap();
        let (mut snapshots, mut made) =
            Snapshots::new(policy(10, u64::MAX), 0, Some(store.snapshot_writer()));
        let tree = Tree::new();
        let conf_state = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        snapshots.start(tree.clone(), 12, 3, conf_state.clone());
        let snapshot = made.recv().await.unwrap().unwrap().snapshot;
        let metadata = snapshot.get_metadata();
        assert_eq!((metadata.index, metadata.term), (12, 3));
        assert_eq!(metadata.get_conf_state(), &conf_state);
        assert_eq!(Tree::from_snapshot(&snapshot.data).unwrap(), tree);
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("snapshot-"))
            .collect();
        assert_eq!(files, ["snapshot-00000000000000000012.snap"]);
    }
}
