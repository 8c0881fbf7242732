//! Snapshots of this member's tree: when to take one, the one being serialized, and a snapshot
//! received from the leader while it is being written.
//!
//! A snapshot is taken once enough entries applied since the last one. The tree is cloned
//! (cheap: its maps are persistent) and serialized on a blocking thread, so that the driver goes
//! on applying; serializing a large tree on the driver stalled every write for hundreds of
//! milliseconds, on every member at once.

use raft::prelude::{ConfState, Snapshot};
use tokio::sync::mpsc;

use crate::tree::Tree;

/// This member's snapshots.
pub struct Snapshots {
    /// Applied entries between snapshots.
    every: u64,
    /// Index of the latest snapshot, taken here or received.
    last: u64,
    /// A snapshot of the tree is being serialized.
    serializing: bool,
    /// When the latest snapshot of the tree was started.
    started: std::time::Instant,
    /// The Ready whose received snapshot is still being written: raft-rs may count the snapshot
    /// as applied only once it is durable.
    installing: Option<u64>,
    /// Where serialized snapshots come back.
    made: mpsc::UnboundedSender<Snapshot>,
}

impl Snapshots {
    /// Snapshots every `every` applied entries, the latest at `last`; serialized ones come back
    /// on the returned receiver.
    pub fn new(every: u64, last: u64) -> (Self, mpsc::UnboundedReceiver<Snapshot>) {
        let (made, serialized) = mpsc::unbounded_channel();
        let snapshots = Snapshots {
            every,
            last,
            serializing: false,
            started: std::time::Instant::now(),
            installing: None,
            made,
        };
        (snapshots, serialized)
    }

    /// Index of the latest snapshot.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Enough entries applied since the last snapshot, and none is being serialized.
    pub fn due(&self, applied: u64) -> bool {
        !self.serializing && applied >= self.last + self.every
    }

    /// Serializes `tree`, applied through `index` (of `term`), on a blocking thread; the
    /// snapshot comes back on the receiver [`Snapshots::new`] returned.
    pub fn start(&mut self, tree: Tree, index: u64, term: u64, conf_state: ConfState) {
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(conf_state);
        let made = self.made.clone();
        self.serializing = true;
        self.started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            snapshot.data = bytes::Bytes::from(tree.to_snapshot());
            let _ = made.send(snapshot);
        });
    }

    /// How long ago the latest snapshot of the tree was started (its serializing time, once it
    /// came back).
    pub fn serializing_for(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A snapshot finished serializing. Returns it if it should compact the log: not if one
    /// from the leader, at `log_snapshot` or later, replaced the log meanwhile.
    pub fn on_made(&mut self, snapshot: Snapshot, log_snapshot: u64) -> Option<Snapshot> {
        self.serializing = false;
        let index = snapshot.get_metadata().index;
        if index <= log_snapshot {
            return None;
        }
        self.last = index;
        Some(snapshot)
    }

    /// A snapshot at `index` from the leader replaced the tree; the write of Ready `ready`
    /// makes it durable.
    pub fn on_received(&mut self, index: u64, ready: u64) {
        self.last = index;
        self.installing = Some(ready);
    }

    /// A received snapshot is not durable yet.
    pub fn is_installing(&self) -> bool {
        self.installing.is_some()
    }

    /// Ready `ready` is durable. Returns true if that made a received snapshot durable (raft-rs
    /// may now count it as applied).
    pub fn on_persisted(&mut self, ready: u64) -> bool {
        if self
            .installing
            .is_some_and(|installing| installing <= ready)
        {
            self.installing = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_every_so_many_entries_and_one_at_a_time() {
        let (mut snapshots, _made) = Snapshots::new(100, 50);
        assert!(!snapshots.due(149));
        assert!(snapshots.due(150));
        snapshots.serializing = true;
        assert!(!snapshots.due(400), "one is being serialized");
        let mut made = Snapshot::default();
        made.mut_metadata().index = 150;
        assert!(snapshots.on_made(made, 0).is_some());
        assert_eq!(snapshots.last(), 150);
        assert!(!snapshots.due(249) && snapshots.due(250));
    }

    #[test]
    fn a_snapshot_overtaken_by_one_from_the_leader_is_dropped() {
        let (mut snapshots, _made) = Snapshots::new(10, 0);
        snapshots.serializing = true;
        snapshots.on_received(40, 7);
        let mut made = Snapshot::default();
        made.mut_metadata().index = 30;
        assert!(snapshots.on_made(made, 40).is_none());
        assert_eq!(snapshots.last(), 40);
        assert!(snapshots.due(50), "serializing ended all the same");
    }

    #[test]
    fn a_received_snapshot_holds_back_apply_until_its_write_is_durable() {
        let (mut snapshots, _made) = Snapshots::new(10, 0);
        assert!(!snapshots.on_persisted(3));
        snapshots.on_received(40, 7);
        assert!(snapshots.is_installing());
        assert!(!snapshots.on_persisted(6));
        assert!(snapshots.on_persisted(8), "a later Ready covers it");
        assert!(!snapshots.is_installing());
    }

    #[tokio::test]
    async fn a_started_snapshot_comes_back_with_the_tree() {
        let (mut snapshots, mut made) = Snapshots::new(10, 0);
        let tree = Tree::new();
        let conf_state = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        snapshots.start(tree.clone(), 12, 3, conf_state.clone());
        let snapshot = made.recv().await.unwrap();
        let metadata = snapshot.get_metadata();
        assert_eq!((metadata.index, metadata.term), (12, 3));
        assert_eq!(metadata.get_conf_state(), &conf_state);
        assert_eq!(Tree::from_snapshot(&snapshot.data).unwrap(), tree);
    }
}
