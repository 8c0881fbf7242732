//! Where the Raft log lives: a durable [`LogStore`] on disk (a write-ahead log of its own by
//! default, or redb), and the in-memory [`RaftLog`] mirror that raft-rs reads through its
//! `Storage` trait.

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod memory;
mod raft_log;
mod redb_store;
mod wal;
mod writer;

#[cfg(test)]
pub use memory::MemoryStore;
pub use raft_log::RaftLog;
pub use redb_store::RedbStore;
pub use wal::{SnapshotWriter, WalStore};
pub use writer::{Persisted, StorageMode, StorageWriter, Write};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};

use crate::error::ServerError;

/// What a member finds on disk when it starts.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Term, vote and commit index.
    pub hard_state: HardState,
    /// Voters at bootstrap (later configurations travel in snapshots and entries).
    pub conf_state: Option<ConfState>,
    /// The latest snapshot, with its data.
    pub snapshot: Option<Snapshot>,
    /// Log entries after the snapshot, in index order.
    pub entries: Vec<Entry>,
    /// How long reading it from disk took, if the store read it ahead (when it opened).
    pub read_ahead_took: std::time::Duration,
}

impl Recovered {
    /// True for a member that never stored anything (a new cluster member).
    pub fn is_empty(&self) -> bool {
        self.conf_state.is_none() && self.snapshot.is_none() && self.entries.is_empty()
    }
}

/// One atomic write: everything in it is on disk when [`LogStore::persist`] returns, or none of
/// it is (unless `may_defer_sync` allows the store to make it durable with the next write).
#[derive(Debug, Default)]
pub struct Persist<'a> {
    /// A snapshot received from the leader: replaces the previous snapshot and the whole log.
    pub snapshot: Option<&'a Snapshot>,
    /// Entries to append; any stored entry at or after the first one's index is replaced.
    pub entries: &'a [Entry],
    /// The hard state to store.
    pub hard_state: Option<&'a HardState>,
    /// The configuration to store (at bootstrap).
    pub conf_state: Option<&'a ConfState>,
    /// Nothing here must be durable before the member goes on: only the commit index changed
    /// (raft-rs's `Ready::must_sync` is false). The store may skip the fsync; the write then
    /// reaches the disk with the next durable one, in order. A commit index lost in a crash is
    /// safe: it is learned again from the leader, and replies never depend on it being on this
    /// member's disk. Saves an fsync per write on the leader's and followers' critical path.
    pub may_defer_sync: bool,
}

impl Persist<'_> {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.conf_state.is_none()
    }
}

/// The durable home of a member's Raft state.
///
/// The default is [`WalStore`]; [`RedbStore`] keeps the log in a redb database (members of
/// earlier versions have one); another engine (raft-engine) fits behind the same three calls.
pub trait LogStore: Send + 'static {
    /// Reads everything back after a restart.
    fn recover(&self) -> Result<Recovered, ServerError>;

    /// Writes `batch` atomically and, unless `batch.may_defer_sync`, durably (fsync) before
    /// returning. A deferred write must become durable no later than the next durable one.
    fn persist(&mut self, batch: Persist<'_>) -> Result<(), ServerError>;

    /// Stores a snapshot made by this member and drops the entries it covers; later entries
    /// stay. Its file may have been written already by [`LogStore::snapshot_writer`]'s writer.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError>;

    /// A writer of this member's snapshots that may run on any thread before
    /// [`LogStore::save_snapshot`], for a store that keeps them as files of their own; `None`
    /// if the store writes a snapshot only inside `save_snapshot`.
    fn snapshot_writer(&self) -> Option<SnapshotWriter> {
        None
    }
}
