//! A snapshot received from the leader, from the Ready that hands it over until it is installed:
//! its tree is decoded on a thread of its own while the driver goes on stepping messages,
//! persisting and ticking, and the committed entries handed over after it wait for that tree.
//!
//! Installing has two halves that end in either order: the tree is decoded and put in place
//! (then the entries that waited apply to it, in order), and the write of the Ready that handed
//! the snapshot over is durable. raft-rs may count the snapshot as applied once it is durable
//! (its configuration is raft-rs's already), and the entries after it only once they are
//! applied to the tree. Reads need nothing of their own here: the applied index stays where the
//! old tree is until the new one is in place, and reads wait for their read index to apply.
//!
//! A later snapshot may arrive while one is being decoded: the leader sends another once this
//! member acknowledged the first (as soon as it is durable) and still lacks entries the leader
//! compacted meanwhile. The later one wins: raft-rs restores a snapshot only at or past the
//! commit index, so it covers every entry held for the earlier one, and the earlier one's tree is
//! dropped when it comes back.

use std::time::{Duration, Instant};

use raft::prelude::{Entry, Snapshot};
use tokio::sync::mpsc;

use super::snapshots::{free, lower_priority};
use crate::error::ServerError;
use crate::tree::Tree;

/// A received snapshot's tree, decoded on its own thread (or why it could not be).
pub struct Decoded {
    /// The Ready that handed the snapshot over: names the install it belongs to.
    ready: u64,
    tree: Result<Tree, ServerError>,
    /// How long decoding took.
    took: Duration,
}

/// What raft-rs may count as applied, as far as installing a snapshot goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Everything it handed over: no snapshot is being installed.
    All,
    /// The snapshot at this index, not the entries after it: they wait for its tree.
    ToSnapshot(u64),
    /// Nothing more: the snapshot is not durable yet.
    Hold,
}

/// A received snapshot's tree ready to replace this member's, with the entries that waited.
pub struct Installed {
    /// The snapshot's index.
    pub index: u64,
    /// Size of the snapshot's data.
    pub bytes: usize,
    pub tree: Tree,
    /// Committed entries after the snapshot, in order, to apply to its tree at once.
    pub held: Vec<Entry>,
    /// When the snapshot was handed over.
    pub received: Instant,
    /// How long decoding its tree took.
    pub decode_took: Duration,
    /// How long the driver spent on it when it was handed over.
    pub blocked: Duration,
}

/// The snapshot being installed.
struct Install {
    /// The Ready that handed it over.
    ready: u64,
    index: u64,
    bytes: usize,
    received: Instant,
    blocked: Duration,
    /// Its write is durable.
    durable: bool,
    /// Its tree is decoded and in place.
    in_place: bool,
    /// Committed entries handed over since, waiting for its tree.
    held: Vec<Entry>,
}

/// The received snapshot being installed, if any.
pub struct Installs {
    current: Option<Install>,
    /// Where decoded trees come back.
    decoded: mpsc::UnboundedSender<Decoded>,
}

impl Installs {
    /// No snapshot being installed; decoded trees come back on the returned receiver.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Decoded>) {
        let (decoded, receiver) = mpsc::unbounded_channel();
        let installs = Installs {
            current: None,
            decoded,
        };
        (installs, receiver)
    }

    /// A snapshot was handed over in Ready `ready`, the driver having spent `blocked` on it so
    /// far: its tree is decoded on a thread of its own. Returns the entries held for a snapshot
    /// it supersedes (it covers them), for the caller to free.
    pub fn start(
        &mut self,
        snapshot: &Snapshot,
        ready: u64,
        blocked: Duration,
    ) -> Result<Vec<Entry>, ServerError> {
        let index = snapshot.get_metadata().index;
        let superseded = self.current.take().map(|install| {
            debug_assert!(install.held.last().is_none_or(|e| e.index <= index));
            tracing::info!(
                index = install.index,
                by = index,
                "a later snapshot from the leader supersedes the one being installed"
            );
            install.held
        });
        self.current = Some(Install {
            ready,
            index,
            bytes: snapshot.data.len(),
            received: Instant::now(),
            blocked,
            durable: false,
            in_place: false,
            held: Vec::new(),
        });
        let data = snapshot.data.clone();
        let decoded = self.decoded.clone();
        #[cfg(test)]
        let gate = gate::current();
        std::thread::Builder::new()
            .name("rmif-decode".to_owned())
            .spawn(move || {
                #[cfg(test)]
                if let Some(gate) = gate {
                    gate.wait();
                }
                lower_priority();
                let decoding = Instant::now();
                let tree = Tree::from_snapshot(&data);
                let took = decoding.elapsed();
                drop(data);
                let _ = decoded.send(Decoded { ready, tree, took });
            })
            .map_err(|source| ServerError::Thread {
                name: "snapshot decoding",
                source,
            })?;
        Ok(superseded.unwrap_or_default())
    }

    /// A snapshot's tree is being decoded: committed entries and reads wait for it.
    pub fn is_decoding(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|install| !install.in_place)
    }

    /// Committed entries were handed over: returns those to apply now. While a tree is being
    /// decoded that is none of them; they are held, in order, for that tree.
    pub fn admit(&mut self, entries: Vec<Entry>) -> Vec<Entry> {
        match &mut self.current {
            Some(install) if !install.in_place => {
                if install.held.is_empty() {
                    install.held = entries;
                } else {
                    install.held.extend(entries);
                }
                Vec::new()
            }
            _ => entries,
        }
    }

    /// Ready `ready` is durable. Returns true if that made the snapshot being installed durable
    /// (raft-rs may count more as applied: see [`Installs::advance`]).
    pub fn on_persisted(&mut self, ready: u64) -> bool {
        let Some(install) = &mut self.current else {
            return false;
        };
        if install.durable || install.ready > ready {
            return false;
        }
        install.durable = true;
        if install.in_place {
            self.current = None;
        }
        true
    }

    /// A tree was decoded. Returns it, with the entries that waited for it, if it belongs to the
    /// snapshot being installed: the caller puts it in place and applies them at once. A tree
    /// of a superseded snapshot is freed here; a snapshot whose tree does not decode is an
    /// error.
    pub fn on_decoded(&mut self, decoded: Decoded) -> Result<Option<Installed>, ServerError> {
        let Decoded { ready, tree, took } = decoded;
        let Some(install) = self
            .current
            .as_mut()
            .filter(|install| install.ready == ready && !install.in_place)
        else {
            match tree {
                Ok(tree) => free(tree),
                Err(error) => {
                    tracing::warn!(%error, "a superseded snapshot from the leader does not decode")
                }
            }
            return Ok(None);
        };
        let tree = tree?;
        install.in_place = true;
        let installed = Installed {
            index: install.index,
            bytes: install.bytes,
            tree,
            held: std::mem::take(&mut install.held),
            received: install.received,
            decode_took: took,
            blocked: install.blocked,
        };
        if install.durable {
            self.current = None;
        }
        Ok(Some(installed))
    }

    /// What raft-rs may count as applied once the entries handed over to apply now are
    /// applied.
    pub fn advance(&self) -> Advance {
        match &self.current {
            None => Advance::All,
            Some(install) if !install.durable => Advance::Hold,
            Some(install) => Advance::ToSnapshot(install.index),
        }
    }
}

/// Lets a test hold back the decoding of the snapshots its replicas receive, to see what they
/// do meanwhile.
#[cfg(test)]
pub(crate) mod gate {
    use std::cell::RefCell;
    use std::sync::{Arc, Condvar, Mutex};

    /// Decoding threads wait here until the gate is opened.
    #[derive(Default)]
    pub(crate) struct DecodeGate {
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl DecodeGate {
        pub(crate) fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }

        pub(super) fn wait(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
    }

    thread_local! {
        static GATE: RefCell<Option<Arc<DecodeGate>>> = const { RefCell::new(None) };
    }

    /// From now on, snapshots received by replicas driven from this thread (a current-thread
    /// runtime's) are decoded only once the returned gate is opened.
    pub(crate) fn close() -> Arc<DecodeGate> {
        let gate = Arc::new(DecodeGate::default());
        GATE.with(|current| *current.borrow_mut() = Some(gate.clone()));
        gate
    }

    pub(super) fn current() -> Option<Arc<DecodeGate>> {
        GATE.with(|current| current.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_of(tree: &Tree, index: u64) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.data = tree.to_snapshot().into();
        snapshot
    }

    fn entries(indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                index,
                ..Entry::default()
            })
            .collect()
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn entries_after_a_snapshot_wait_for_its_tree_and_come_back_in_order() {
        let (mut installs, mut decoded) = Installs::new();
        assert_eq!(
            installs.admit(entries(1..=2)).len(),
            2,
            "nothing installing"
        );
        assert_eq!(installs.advance(), Advance::All);

        let tree = Tree::new();
        let superseded = installs
            .start(&snapshot_of(&tree, 10), 4, Duration::ZERO)
            .unwrap();
        assert!(superseded.is_empty());
        assert!(installs.is_decoding());
        assert_eq!(installs.advance(), Advance::Hold, "not durable yet");
        assert!(!installs.on_persisted(3), "an earlier Ready");
        assert!(installs.on_persisted(5), "a later Ready covers it");
        assert_eq!(installs.advance(), Advance::ToSnapshot(10));

        assert!(installs.admit(entries(11..=12)).is_empty());
        assert!(installs.admit(entries(13..=13)).is_empty());
        let installed = installs
            .on_decoded(decoded.blocking_recv().unwrap())
            .unwrap()
            .expect("the tree of the snapshot being installed");
        assert_eq!(installed.index, 10);
        assert_eq!(installed.tree, tree);
        assert_eq!(indexes(&installed.held), [11, 12, 13]);
        assert!(!installs.is_decoding());
        assert_eq!(installs.advance(), Advance::All, "durable and in place");
        assert_eq!(installs.admit(entries(14..=14)).len(), 1);
    }

    #[test]
    fn a_tree_in_place_before_its_snapshot_is_durable_holds_back_only_raft() {
        let (mut installs, mut decoded) = Installs::new();
        installs
            .start(&snapshot_of(&Tree::new(), 10), 4, Duration::ZERO)
            .unwrap();
        let installed = installs
            .on_decoded(decoded.blocking_recv().unwrap())
            .unwrap()
            .unwrap();
        assert!(installed.held.is_empty());
        assert!(!installs.is_decoding());
        assert_eq!(installs.admit(entries(11..=11)).len(), 1);
        assert_eq!(installs.advance(), Advance::Hold, "not durable yet");
        assert!(installs.on_persisted(4));
        assert_eq!(installs.advance(), Advance::All);
        assert!(!installs.on_persisted(5), "nothing installing any more");
    }

    #[test]
    fn a_later_snapshot_supersedes_one_being_decoded() {
        let (mut installs, mut decoded) = Installs::new();
        let gate = gate::close();
        installs
            .start(&snapshot_of(&Tree::new(), 10), 4, Duration::ZERO)
            .unwrap();
        assert!(installs.on_persisted(4));
        assert!(installs.admit(entries(11..=15)).is_empty());

        let mut later = Tree::new();
        later.skip(20);
        let superseded = installs
            .start(&snapshot_of(&later, 20), 6, Duration::ZERO)
            .unwrap();
        assert_eq!(indexes(&superseded), [11, 12, 13, 14, 15], "covered by it");
        assert_eq!(
            installs.advance(),
            Advance::Hold,
            "the later one is not durable"
        );
        assert!(installs.admit(entries(21..=21)).is_empty());
        gate.open();

        let mut installed = None;
        for _ in 0..2 {
            if let Some(tree) = installs
                .on_decoded(decoded.blocking_recv().unwrap())
                .unwrap()
            {
                assert!(installed.is_none(), "only one tree is installed");
                installed = Some(tree);
            }
        }
        let installed = installed.unwrap();
        assert_eq!((installed.index, &installed.tree), (20, &later));
        assert_eq!(indexes(&installed.held), [21]);
        assert!(installs.on_persisted(6));
        assert_eq!(installs.advance(), Advance::All);
    }

    #[test]
    fn a_snapshot_whose_tree_does_not_decode_is_an_error() {
        let (mut installs, mut decoded) = Installs::new();
        let mut snapshot = snapshot_of(&Tree::new(), 10);
        snapshot.data = vec![0xc1, 0xff, 0x00].into();
        installs.start(&snapshot, 4, Duration::ZERO).unwrap();
        let result = installs.on_decoded(decoded.blocking_recv().unwrap());
        assert!(
            matches!(result, Err(ServerError::Snapshot(_))),
            "{:?}",
            result.err()
        );
    }
}
