//! The in-memory mirror of a member's Raft state that raft-rs reads through `raft::Storage`:
//! the latest snapshot (with its data, to send to lagging followers) and the entries after it.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

use super::Recovered;

#[derive(Default)]
struct State {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl State {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |entry| entry.index)
    }
}

/// Shared handle to the mirror; the replica writes it after each durable write, raft-rs reads it.
#[derive(Clone, Default)]
pub struct RaftLog {
    state: Arc<RwLock<State>>,
}

impl RaftLog {
    /// A mirror of what was recovered from disk. `bootstrap` is the configuration of a brand-new
    /// cluster, used when nothing was stored.
    pub fn from_recovered(recovered: &Recovered, bootstrap: &ConfState) -> Self {
        let mut state = State {
            hard_state: recovered.hard_state.clone(),
            ..State::default()
        };
        if let Some(snapshot) = &recovered.snapshot {
            state.conf_state = snapshot.get_metadata().get_conf_state().clone();
            state.snapshot = snapshot.clone();
        } else {
            state.conf_state = recovered
                .conf_state
                .clone()
                .unwrap_or_else(|| bootstrap.clone());
        }
        let first = state.first_index();
        state.entries = recovered
            .entries
            .iter()
            .filter(|entry| entry.index >= first)
            .cloned()
            .collect();
        RaftLog {
            state: Arc::new(RwLock::new(state)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends entries, replacing any conflicting tail.
    pub fn append(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut state = self.write();
        let offset = state.first_index();
        let keep = first.index.saturating_sub(offset) as usize;
        state.entries.truncate(keep);
        state.entries.extend_from_slice(entries);
    }

    /// Stores the hard state.
    pub fn set_hard_state(&self, hard_state: &HardState) {
        self.write().hard_state = hard_state.clone();
    }

    /// The current configuration.
    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    /// Installs a snapshot received from the leader: it replaces the whole log. Returns the
    /// entries and the snapshot it replaces, for the caller to free where it costs nothing.
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> (Vec<Entry>, Snapshot) {
        let mut state = self.write();
        let metadata = snapshot.get_metadata();
        state.conf_state = metadata.get_conf_state().clone();
        state.hard_state.commit = state.hard_state.commit.max(metadata.index);
        state.hard_state.term = state.hard_state.term.max(metadata.term);
        let replaced = std::mem::replace(&mut state.snapshot, snapshot.clone());
        (std::mem::take(&mut state.entries), replaced)
    }

    /// Records a snapshot made by this member and drops the entries it covers; returns them and
    /// the snapshot it replaces, for the caller to free where it costs nothing.
    pub fn store_snapshot(&self, snapshot: &Snapshot) -> (Vec<Entry>, Snapshot) {
        let mut state = self.write();
        let index = snapshot.get_metadata().index;
        let covered = state.entries.partition_point(|entry| entry.index <= index);
        let kept = state.entries.split_off(covered);
        let replaced = std::mem::replace(&mut state.snapshot, snapshot.clone());
        (std::mem::replace(&mut state.entries, kept), replaced)
    }

    /// Term of the entry at `index`, if still in memory.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        let state = self.read();
        if index == state.snapshot_index() {
            return Some(state.snapshot.get_metadata().term);
        }
        let first = state.entries.first()?.index;
        state
            .entries
            .get(index.checked_sub(first)? as usize)
            .map(|entry| entry.term)
    }

    /// Index of the latest snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.read().snapshot_index()
    }

    /// Index of the last entry.
    pub fn last_index(&self) -> u64 {
        self.read().last_index()
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let state = self.read();
        Ok(RaftState::new(
            state.hard_state.clone(),
            state.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let state = self.read();
        if low < state.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > state.last_index() + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let offset = state.first_index();
        let mut entries = state.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let state = self.read();
        if index == state.snapshot_index() {
            return Ok(state.snapshot.get_metadata().term);
        }
        if index < state.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if index > state.last_index() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        Ok(state.entries[(index - state.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let state = self.read();
        if state.snapshot_index() < request_index || state.snapshot_index() == 0 {
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(state.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            index,
            term: 1,
            ..Entry::default()
        }
    }

    fn snapshot_at(index: u64) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = 1;
        snapshot
    }

    #[test]
    fn a_received_snapshot_replaces_the_log_and_hands_back_what_it_replaced() {
        let log = RaftLog::default();
        log.append(&(1..=5).map(entry).collect::<Vec<_>>());
        log.store_snapshot(&snapshot_at(2));
        let (entries, replaced) = log.apply_snapshot(&snapshot_at(9));
        let indexes: Vec<u64> = entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [3, 4, 5]);
        assert_eq!(replaced.get_metadata().index, 2);
        assert_eq!((log.snapshot_index(), log.last_index()), (9, 9));
    }
}
