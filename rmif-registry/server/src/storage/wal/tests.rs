use std::path::Path;

use raft::prelude::HardState;

use super::*;
use crate::storage::conformance::{append, entry, indexes, snapshot};

fn append_entries(store: &mut WalStore, range: std::ops::RangeInclusive<u64>) {
    for index in range {
        append(store, &[entry(index, 1)]);
    }
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(SEGMENT_SUFFIX))
        .collect();
    names.sort();
    names
}

fn recovered_indexes(dir: &Path) -> Vec<(u64, u64)> {
    indexes(&WalStore::open(dir).unwrap().recover().unwrap().entries)
}

#[test]
fn a_torn_last_record_is_dropped_and_the_log_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    append_entries(&mut WalStore::open(dir.path()).unwrap(), 1..=3);
    let segment = dir.path().join(&segments(dir.path())[0]);
    let whole = fs::metadata(&segment).unwrap().len();
    // A crash in the middle of writing the fourth record: part of its header and payload.
    let mut partial = Vec::new();
    record::encode(&mut partial, None, None, None, &[entry(4, 1)]).unwrap();
    partial.truncate(partial.len() / 2);
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&partial)
        .unwrap();
    {
        let mut store = WalStore::open(dir.path()).unwrap();
        assert_eq!(
            indexes(&store.recover().unwrap().entries),
            vec![(1, 1), (2, 1), (3, 1)]
        );
        assert_eq!(fs::metadata(&segment).unwrap().len(), whole, "not cut");
        append_entries(&mut store, 4..=4);
    }
    assert_eq!(
        recovered_indexes(dir.path()),
        vec![(1, 1), (2, 1), (3, 1), (4, 1)]
    );
}

#[test]
fn a_record_cut_short_at_the_end_is_dropped_alone() {
    let dir = tempfile::tempdir().unwrap();
    append_entries(&mut WalStore::open(dir.path()).unwrap(), 1..=3);
    let segment = dir.path().join(&segments(dir.path())[0]);
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert_eq!(recovered_indexes(dir.path()), vec![(1, 1), (2, 1)]);
}

#[test]
fn segments_roll_and_a_snapshot_removes_those_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = WalStore::open(dir.path()).unwrap().with_segment_bytes(256);
        let hs = HardState {
            term: 1,
            vote: 3,
            commit: 1,
            ..HardState::default()
        };
        // The hard state is written once, in the first segment: it must outlive that segment.
        store
            .persist(Persist {
                hard_state: Some(&hs),
                ..Persist::default()
            })
            .unwrap();
        append_entries(&mut store, 1..=60);
        let before = segments(dir.path()).len();
        assert!(before > 3, "only {before} segments");
        store.save_snapshot(&snapshot(50, 1, b"tree")).unwrap();
        let after = segments(dir.path()).len();
        assert!(after < before, "{after} segments after the snapshot");
    }
    let recovered = WalStore::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered.hard_state.vote, 3);
    assert_eq!(
        recovered.hard_state.commit, 50,
        "commit raised to the snapshot"
    );
    assert_eq!(recovered.snapshot.unwrap().get_metadata().index, 50);
    assert_eq!(
        indexes(&recovered.entries),
        (51..=60).map(|i| (i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn a_zeroed_tail_is_cut_like_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    append_entries(&mut WalStore::open(dir.path()).unwrap(), 1..=2);
    let segment = dir.path().join(&segments(dir.path())[0]);
    // Blocks the file system allocated but a crash kept from being written.
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[0; 4096])
        .unwrap();
    assert_eq!(recovered_indexes(dir.path()), vec![(1, 1), (2, 1)]);
}

#[test]
fn damage_inside_the_last_segment_is_an_error_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    append_entries(&mut WalStore::open(dir.path()).unwrap(), 1..=5);
    let segment = dir.path().join(&segments(dir.path())[0]);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[12] ^= 0xff;
    fs::write(&segment, &bytes).unwrap();
    let error = WalStore::open(dir.path())
        .err()
        .expect("damage went unnoticed");
    assert!(
        error.to_string().contains(&segment.display().to_string())
            && error.to_string().contains("at byte 0"),
        "{error}"
    );
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        bytes.len() as u64,
        "the damaged log was cut"
    );
}

#[test]
fn damage_before_the_end_of_the_log_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    append_entries(
        &mut WalStore::open(dir.path()).unwrap().with_segment_bytes(128),
        1..=20,
    );
    let first = dir.path().join(&segments(dir.path())[0]);
    let mut bytes = fs::read(&first).unwrap();
    bytes[12] ^= 0xff;
    fs::write(&first, bytes).unwrap();
    let error = WalStore::open(dir.path())
        .err()
        .expect("damage went unnoticed");
    assert!(
        error.to_string().contains(&first.display().to_string())
            && error.to_string().contains("damaged"),
        "{error}"
    );
}

#[test]
fn a_snapshot_file_no_record_names_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = WalStore::open(dir.path()).unwrap();
        append_entries(&mut store, 1..=3);
        // What a crash leaves between writing a snapshot's file and the record naming it.
        store.write_snapshot(&snapshot(3, 1, b"tree")).unwrap();
    }
    let orphan = snapshot_path(dir.path(), 3);
    assert!(orphan.exists());
    let recovered = WalStore::open(dir.path()).unwrap().recover().unwrap();
    assert!(recovered.snapshot.is_none());
    assert_eq!(indexes(&recovered.entries), vec![(1, 1), (2, 1), (3, 1)]);
    assert!(!orphan.exists(), "the orphan snapshot file stayed");
}

#[test]
fn a_missing_snapshot_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = WalStore::open(dir.path()).unwrap();
        append_entries(&mut store, 1..=3);
        store.save_snapshot(&snapshot(2, 1, b"tree")).unwrap();
    }
    fs::remove_file(snapshot_path(dir.path(), 2)).unwrap();
    let error = WalStore::open(dir.path()).err().expect("missing snapshot");
    assert!(error.to_string().contains("names snapshot 2"), "{error}");
}

#[test]
fn each_snapshot_starts_a_segment_so_the_next_one_drops_the_log_before_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = WalStore::open(dir.path()).unwrap();
        append_entries(&mut store, 1..=100);
        store.save_snapshot(&snapshot(90, 1, b"first")).unwrap();
        assert_eq!(
            segments(dir.path()).len(),
            2,
            "a new segment at the snapshot"
        );
        append_entries(&mut store, 101..=200);
        store.save_snapshot(&snapshot(190, 1, b"second")).unwrap();
        // The first segment ended at entry 100, covered by the second snapshot.
        assert_eq!(
            segments(dir.path()),
            ["00000000000000000001.wal", "00000000000000000002.wal"]
        );
    }
    let recovered = WalStore::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(recovered.snapshot.unwrap().data.as_ref(), b"second");
    assert_eq!(
        indexes(&recovered.entries),
        (191..=200).map(|i| (i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn a_snapshot_file_written_ahead_is_kept_and_named_by_save_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    append_entries(&mut store, 1..=20);
    let made = snapshot(15, 1, b"made off the storage thread");
    store.snapshot_writer().write(&made).unwrap();
    // A snapshot from the leader at a lower index is installed meanwhile: the newer file,
    // written ahead, must survive it.
    store
        .persist(Persist {
            snapshot: Some(&snapshot(10, 1, b"received")),
            ..Persist::default()
        })
        .unwrap();
    assert!(snapshot_path(dir.path(), 15).exists());
    append_entries(&mut store, 11..=20);
    store.save_snapshot(&made).unwrap();
    drop(store);
    let recovered = WalStore::open(dir.path()).unwrap().recover().unwrap();
    assert_eq!(
        recovered.snapshot.unwrap().data.as_ref(),
        b"made off the storage thread"
    );
    assert!(
        !snapshot_path(dir.path(), 10).exists(),
        "the older one went"
    );
}

#[test]
fn a_snapshot_file_no_record_names_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    append_entries(&mut store, 1..=20);
    // A crash after the file was written, before its record was.
    store
        .snapshot_writer()
        .write(&snapshot(15, 1, b"orphan"))
        .unwrap();
    fs::write(
        dir.path().join("snapshot-00000000000000000018.tmp"),
        b"half",
    )
    .unwrap();
    drop(store);
    let recovered = WalStore::open(dir.path()).unwrap().recover().unwrap();
    assert!(recovered.snapshot.is_none());
    assert_eq!(recovered.entries.len(), 20);
    let left: Vec<String> = list(dir.path())
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(SNAPSHOT_PREFIX))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_long_log_with_replaced_suffixes_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = WalStore::open(dir.path()).unwrap();
        append_entries(&mut store, 1..=5000);
        // A new leader's entries replace the tail from 4001 on, in term 2.
        for index in 4001..=4500 {
            append(&mut store, &[entry(index, 2)]);
        }
    }
    let expected: Vec<(u64, u64)> = (1..=4000)
        .map(|i| (i, 1))
        .chain((4001..=4500).map(|i| (i, 2)))
        .collect();
    assert_eq!(recovered_indexes(dir.path()), expected);
}

#[test]
fn a_snapshot_is_encoded_in_parts_exactly_as_protobuf_encodes_it_whole() {
    let mut large = snapshot(7, 3, b"");
    large.data = vec![0x5a; 300_000].into();
    large.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    for sample in [large, snapshot(1, 1, b"x"), snapshot(2, 1, b"")] {
        let parts: Vec<u8> = encode_snapshot(&sample).unwrap().concat();
        assert_eq!(parts, sample.write_to_bytes().unwrap());
    }
}
