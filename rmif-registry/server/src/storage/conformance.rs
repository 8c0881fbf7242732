//! What every [`LogStore`] must do, run against each engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use raft::prelude::{ConfState, Entry, HardState, Snapshot};

use super::{LogStore, MemoryStore, Persist, RedbStore, WalStore};

/// An engine under test: how to open it on a directory.
type Open = fn(&Path) -> Box<dyn LogStore>;

fn redb(dir: &Path) -> Box<dyn LogStore> {
    Box::new(RedbStore::open(&dir.join("raft.redb")).unwrap())
}

fn wal(dir: &Path) -> Box<dyn LogStore> {
    Box::new(WalStore::open(&dir.join("wal")).unwrap())
}

/// The in-memory store "on" a directory: one store per directory, shared by every opening.
fn memory(dir: &Path) -> Box<dyn LogStore> {
    static DISKS: Mutex<Option<HashMap<PathBuf, MemoryStore>>> = Mutex::new(None);
    let mut disks = DISKS.lock().unwrap();
    let store = disks
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_owned())
        .or_default();
    Box::new(store.clone())
}

const ENGINES: [(&str, Open); 3] = [("redb", redb), ("wal", wal), ("memory", memory)];

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: bytes::Bytes::from(format!("e{index}")),
        ..Entry::default()
    }
}

pub fn snapshot(index: u64, term: u64, data: &'static [u8]) -> Snapshot {
    let mut snapshot = Snapshot {
        data: bytes::Bytes::from_static(data),
        ..Snapshot::default()
    };
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = term;
    snapshot
}

/// Persists `entries` alone, durably.
pub fn append(store: &mut dyn LogStore, entries: &[Entry]) {
    store
        .persist(Persist {
            entries,
            ..Persist::default()
        })
        .unwrap();
}

pub fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn survives_reopening_with_truncation_and_snapshots() {
    for (name, open) in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            assert!(store.recover().unwrap().is_empty(), "{name}");
            let conf = ConfState {
                voters: vec![1, 2, 3],
                ..ConfState::default()
            };
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 3,
                ..HardState::default()
            };
            store
                .persist(Persist {
                    entries: &[entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
                    hard_state: Some(&hs),
                    conf_state: Some(&conf),
                    ..Persist::default()
                })
                .unwrap();
            // A new leader overwrites the uncommitted tail.
            append(store.as_mut(), &[entry(4, 2), entry(5, 2)]);
            store.save_snapshot(&snapshot(2, 1, b"tree")).unwrap();
        }
        let store = open(dir.path());
        let recovered = store.recover().unwrap();
        let back = recovered.snapshot.unwrap();
        assert_eq!(back.get_metadata().index, 2, "{name}");
        assert_eq!(&back.data[..], b"tree", "{name}");
        assert_eq!(recovered.hard_state.term, 2, "{name}");
        assert_eq!(
            recovered.conf_state.unwrap().voters,
            vec![1, 2, 3],
            "{name}"
        );
        assert_eq!(
            indexes(&recovered.entries),
            vec![(3, 1), (4, 2), (5, 2)],
            "{name}"
        );
    }
}

#[test]
fn a_received_snapshot_replaces_the_log() {
    for (name, open) in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            append(store.as_mut(), &[entry(1, 1), entry(2, 1), entry(12, 1)]);
            let hs = HardState {
                term: 3,
                commit: 10,
                ..HardState::default()
            };
            store
                .persist(Persist {
                    snapshot: Some(&snapshot(10, 3, b"state")),
                    hard_state: Some(&hs),
                    ..Persist::default()
                })
                .unwrap();
            append(store.as_mut(), &[entry(11, 3)]);
        }
        let recovered = open(dir.path()).recover().unwrap();
        assert_eq!(indexes(&recovered.entries), vec![(11, 3)], "{name}");
        assert_eq!(recovered.hard_state.commit, 10, "{name}");
        let back = recovered.snapshot.unwrap();
        assert_eq!(
            (back.get_metadata().index, &back.data[..]),
            (10, &b"state"[..]),
            "{name}"
        );
    }
}

#[test]
fn a_deferred_write_is_durable_with_the_next_durable_one() {
    for (name, open) in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            let hs = HardState {
                term: 1,
                commit: 1,
                ..HardState::default()
            };
            store
                .persist(Persist {
                    hard_state: Some(&hs),
                    may_defer_sync: true,
                    ..Persist::default()
                })
                .unwrap();
            append(store.as_mut(), &[entry(1, 1)]);
        }
        let recovered = open(dir.path()).recover().unwrap();
        assert_eq!(recovered.hard_state.commit, 1, "{name}");
        assert_eq!(indexes(&recovered.entries), vec![(1, 1)], "{name}");
    }
}
