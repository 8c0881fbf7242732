//! Snapshots of this member's tree: when to take one, and the one being made. A snapshot
//! received from the leader is installed by [`super::install`].
//!
//! A snapshot is due once enough entries, or enough bytes of them, were appended to the log
//! since the last one: the count bounds a restart's replay, the bytes the log's size on disk.
//! The members of a cluster take theirs in turn, not all at once (see [`Turn`]): a write needs
//! a quorum, and a member busy serializing a large tree is slower to acknowledge one.
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

/// A byte threshold between half and all of `log_bytes`, drawn anew for every interval.
fn draw_due_bytes(log_bytes: u64) -> u64 {
    log_bytes - fastrand::u64(0..=log_bytes / 2)
}

/// Drops `garbage` on a thread of its own: freeing a large tree or a hundred thousand entries
/// takes milliseconds the driver should not spend.
pub(super) fn free<T: Send + 'static>(garbage: T) {
    freeing(move || drop(garbage));
}

/// Runs `work`, which frees memory, on a thread of its own; returns its handle. Should the
/// thread not start, `work` is dropped here, and what it held with it.
fn freeing(work: impl FnOnce() + Send + 'static) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rmif-free".to_owned())
        .spawn(work)
        .ok()
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

/// This member's place among the cluster's members, which staggers their snapshots.
///
/// By entries, the member of rank `k` (by id) among `n` takes its snapshots at the indexes
/// `k/n` of an interval into each interval: in a 3-member cluster snapshotting every 90,000
/// entries, at 90,000, 180,000… for the first; 30,000, 120,000… for the second; 60,000,
/// 150,000… for the third. The intervals stay `snapshot_entries` long, and the phase holds
/// after a restart or a snapshot received from the leader, since it is one of indexes, not of
/// counts. By bytes (which members do not count alike), each interval's threshold is drawn
/// between half and all of `snapshot_log_mb`, as ZooKeeper draws its snapshot count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// Members with a lower id.
    pub rank: u64,
    /// Members, this one included.
    pub members: u64,
}

impl Turn {
    /// The turn of member `id` among the members `ids` (which may or may not include it).
    pub fn of(id: u64, ids: impl Iterator<Item = u64>) -> Turn {
        let (mut rank, mut members) = (0, 1);
        for other in ids.filter(|other| *other != id) {
            members += 1;
            rank += u64::from(other < id);
        }
        Turn { rank, members }
    }

    /// The first index after `last` in this turn's phase of intervals of `every` entries: at
    /// most `every` entries after `last`.
    fn next_after(self, last: u64, every: u64) -> u64 {
        let every = every.max(1);
        let phase = every / self.members.max(1) * self.rank % every;
        let start_of_interval = last - last % every;
        match start_of_interval + phase {
            next if next > last => next,
            next => next.saturating_add(every),
        }
    }
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
    /// Bytes appended after which this interval's snapshot is due (drawn, see [`Turn`]).
    due_bytes: u64,
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
            due_bytes: draw_due_bytes(policy.log_bytes),
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

    /// Enough entries applied, or bytes appended, since the last snapshot, for this member's
    /// `turn`, and none is being made.
    pub fn due(&self, applied: u64, turn: Turn) -> bool {
        !self.making
            && self
                .failed_at
                .is_none_or(|at| at.elapsed() >= RETRY_AFTER_FAILURE)
            && applied > self.last
            && (applied >= turn.next_after(self.last, self.policy.entries)
                || self.appended_bytes >= self.due_bytes)
    }

    /// A new interval begins: nothing appended in it yet, and its own byte threshold.
    fn begin_interval(&mut self) {
        self.appended_bytes = 0;
        self.due_bytes = draw_due_bytes(self.policy.log_bytes);
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
        // A buffer that outgrows its capacity is copied whole, while capacity never written
        // costs address space only: a new buffer gets room to grow by half, and a spare is
        // used if it has room for an eighth more than the last snapshot.
        let (enough, capacity) = (
            self.last_bytes + self.last_bytes / 8,
            self.last_bytes + self.last_bytes / 2,
        );
        let spare = self.spare.clone();
        self.making = true;
        self.begin_interval();
        self.started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("rmif-snapshot".to_owned())
            .spawn(move || {
                lower_priority();
                let serializing = Instant::now();
                // A spare too small is dropped, not grown: growing it would copy its old bytes.
                let mut buffer = spare
                    .take()
                    .filter(|spare| spare.capacity() >= enough)
                    .unwrap_or_else(|| Vec::with_capacity(capacity));
                buffer.clear();
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
        freeing(move || {
            drop(entries);
            if let Ok(buffer) = replaced.data.try_into_mut() {
                spare.put(buffer.into());
            }
        })
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
        self.begin_interval();
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

    /// The only member of its cluster.
    const ALONE: Turn = Turn {
        rank: 0,
        members: 1,
    };

    #[test]
    fn a_snapshot_is_due_every_so_many_entries_and_one_at_a_time() {
        let (mut snapshots, _made) = Snapshots::new(policy(100, u64::MAX), 0, None);
        assert!(!snapshots.due(99, ALONE));
        assert!(snapshots.due(100, ALONE));
        snapshots.making = true;
        assert!(!snapshots.due(400, ALONE), "one is being made");
        assert!(snapshots.on_made(made_at(100), 0).is_some());
        assert_eq!(snapshots.last(), 100);
        assert!(!snapshots.due(199, ALONE) && snapshots.due(200, ALONE));
    }

    #[test]
    fn members_take_their_snapshots_in_turn_and_keep_their_phase() {
        let turns: Vec<Turn> = [7, 3, 5]
            .into_iter()
            .map(|id| Turn::of(id, [3, 5, 7].into_iter()))
            .collect();
        assert_eq!(
            turns
                .iter()
                .map(|t| (t.rank, t.members))
                .collect::<Vec<_>>(),
            [(2, 3), (0, 3), (1, 3)]
        );
        // Every 90 entries: the member of rank 0 at 90, 180…; rank 1 at 30, 120…; rank 2 at
        // 60, 150….
        let first_due = |turn: Turn, last: u64| {
            let (snapshots, _made) = Snapshots::new(policy(90, u64::MAX), last, None);
            (last + 1..)
                .find(|&applied| snapshots.due(applied, turn))
                .unwrap()
        };
        assert_eq!(first_due(turns[1], 0), 90);
        assert_eq!(first_due(turns[2], 0), 30);
        assert_eq!(first_due(turns[0], 0), 60);
        assert_eq!(first_due(turns[2], 30), 120, "an interval later");
        // A snapshot taken a little late (applies come in batches), or one from the leader at
        // another member's phase, does not shift the phase: the next one is back in turn.
        assert_eq!(first_due(turns[2], 37), 120);
        assert_eq!(
            first_due(turns[2], 90),
            120,
            "after the leader's snapshot at 90"
        );
        assert_eq!(
            first_due(turns[2], 120),
            210,
            "never more than an interval apart"
        );
        // A member outside the voters (learning, or just removed) still has a turn.
        let outside = Turn::of(9, [3, 5, 7].into_iter());
        assert_eq!((outside.rank, outside.members), (3, 4));
        assert_eq!(first_due(outside, 0), 66);
        assert_eq!(first_due(ALONE, 5), 90);
    }

    #[test]
    fn a_snapshot_is_due_once_the_log_grew_by_between_half_and_all_of_its_bytes() {
        for _ in 0..20 {
            let (mut snapshots, _made) = Snapshots::new(policy(1000, 4096), 0, None);
            snapshots.on_appended(2047);
            assert!(!snapshots.due(10, ALONE), "less than half");
            snapshots.on_appended(4096 - 2047);
            assert!(
                snapshots.due(10, ALONE),
                "4096 bytes appended after 10 entries"
            );
            assert!(
                !snapshots.due(0, ALONE),
                "nothing applied since the last snapshot"
            );
            snapshots.on_received(10);
            assert!(
                !snapshots.due(11, ALONE),
                "a received snapshot starts the count again"
            );
        }
        // The threshold is drawn anew for each interval, so members rarely agree on it.
        let drawn: std::collections::BTreeSet<u64> =
            (0..50).map(|_| draw_due_bytes(1 << 20)).collect();
        assert!(drawn.len() > 1);
        assert!(drawn.iter().all(|&b| (1 << 19..=1 << 20).contains(&b)));
    }

    #[test]
    fn a_failed_snapshot_is_not_retried_at_once() {
        let (mut snapshots, _made) = Snapshots::new(policy(10, u64::MAX), 0, None);
        snapshots.making = true;
        snapshots.on_failed();
        assert!(!snapshots.due(100, ALONE), "retried only after a pause");
        snapshots.failed_at = Some(Instant::now() - RETRY_AFTER_FAILURE);
        assert!(snapshots.due(100, ALONE));
    }

    #[test]
    fn a_snapshot_overtaken_by_one_from_the_leader_is_dropped() {
        let (mut snapshots, _made) = Snapshots::new(policy(10, u64::MAX), 0, None);
        snapshots.making = true;
        snapshots.on_received(40);
        assert!(snapshots.on_made(made_at(30), 40).is_none());
        assert_eq!(snapshots.last(), 40);
        assert!(snapshots.due(50, ALONE), "making ended all the same");
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
