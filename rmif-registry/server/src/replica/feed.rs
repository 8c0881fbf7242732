//! The change feed: every change applied to the tree, published in order to watchers, with a
//! bounded history so that a watcher resuming from a zxid is replayed what it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::tree::Change;

/// Changes applied by one entry, published to watchers.
#[derive(Debug, Clone)]
pub enum Published {
    /// An entry changed these nodes.
    Changes {
        /// The entry's index.
        zxid: u64,
        /// What changed.
        changes: Arc<Vec<Change>>,
    },
    /// The tree was replaced by a snapshot: watchers must resynchronize.
    Reset {
        /// The snapshot's index.
        zxid: u64,
    },
}

/// Changes of consecutive entries, by zxid.
pub type Replay = Vec<(u64, Arc<Vec<Change>>)>;

/// What a new watcher starts from: the replayable changes after its zxid, or `None` if they
/// are no longer all known (the watcher must resynchronize), and the live feed.
#[derive(Debug)]
pub struct Subscription {
    /// Changes after the requested zxid, in order; `None` when a resync is needed.
    pub replay: Option<Replay>,
    /// Everything published after the replay.
    pub live: broadcast::Receiver<Published>,
    /// The zxid the watch starts from (the replay and the live feed follow it).
    pub from: u64,
}

/// Changes kept for watchers that resume from a zxid (entries, not individual changes).
const HISTORY_ENTRIES: usize = 100_000;
/// Bytes of changes kept: changes carry their node's data (up to 1 MiB each), so the history is
/// bounded by size as well as by entries.
const HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// Published events a live subscriber may fall behind by before it misses some (and
/// resynchronizes).
const LIVE_CAPACITY: usize = 65_536;

/// The live feed and its history. Events are published while the history is locked, so that a
/// new subscriber sees each change exactly once: in its replay or on its live feed.
pub struct ChangeFeed {
    live: broadcast::Sender<Published>,
    history: Mutex<History>,
}

/// Recent changes, for watchers resuming from a zxid.
struct History {
    entries: VecDeque<(u64, Arc<Vec<Change>>)>,
    capacity: usize,
    /// What the entries hold, roughly (paths and data), and the most they may.
    bytes: usize,
    max_bytes: usize,
    /// Changes at or before this zxid are not all here (dropped, or replaced by a snapshot).
    complete_after: u64,
}

impl ChangeFeed {
    /// A feed for a member whose state starts at `start` (changes before it are unknown here).
    pub fn new(start: u64) -> Self {
        Self::with_history(HISTORY_ENTRIES, HISTORY_BYTES, start)
    }

    fn with_history(capacity: usize, max_bytes: usize, start: u64) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        ChangeFeed {
            live,
            history: Mutex::new(History {
                entries: VecDeque::new(),
                capacity,
                bytes: 0,
                max_bytes,
                complete_after: start,
            }),
        }
    }

    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to changes after `since` (or after the applied state, if `None`). `applied`
    /// is read while nothing can be published, and bounds `since`: a watcher cannot start from
    /// a state this member has not reached.
    pub fn subscribe(&self, since: Option<u64>, applied: impl FnOnce() -> u64) -> Subscription {
        let history = self.history();
        let live = self.live.subscribe();
        let applied = applied();
        let from = since.unwrap_or(applied).min(applied);
        let replay = (from >= history.complete_after).then(|| {
            history
                .entries
                .iter()
                .filter(|(zxid, _)| *zxid > from)
                .cloned()
                .collect()
        });
        Subscription { replay, live, from }
    }

    /// Publishes `event` to live subscribers and records it for later ones.
    pub fn publish(&self, event: Published) {
        let mut history = self.history();
        match &event {
            Published::Changes { zxid, changes } => {
                history.bytes += size_of_changes(changes);
                history.entries.push_back((*zxid, changes.clone()));
                while history.entries.len() > history.capacity
                    || (history.bytes > history.max_bytes && history.entries.len() > 1)
                {
                    let Some((dropped, changes)) = history.entries.pop_front() else {
                        break;
                    };
                    history.bytes -= size_of_changes(&changes);
                    history.complete_after = dropped;
                }
            }
            Published::Reset { zxid } => {
                history.entries.clear();
                history.bytes = 0;
                history.complete_after = *zxid;
            }
        }
        let _ = self.live.send(event);
    }
}

/// What one entry's changes hold in the history, roughly.
fn size_of_changes(changes: &[Change]) -> usize {
    changes
        .iter()
        .map(|c| 32 + c.path.len() + c.data.as_ref().map_or(0, |d| d.len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use rmif_registry::ChangeKind;

    use super::*;

    fn changed(zxid: u64) -> Published {
        Published::Changes {
            zxid,
            changes: Arc::new(vec![Change {
                kind: ChangeKind::DataChanged,
                path: format!("/n{zxid}"),
                data: None,
            }]),
        }
    }

    fn zxids(replay: &Option<Replay>) -> Option<Vec<u64>> {
        replay
            .as_ref()
            .map(|entries| entries.iter().map(|(zxid, _)| *zxid).collect())
    }

    #[test]
    fn a_subscriber_is_replayed_what_followed_its_zxid_then_hears_the_rest_live() {
        let feed = ChangeFeed::new(0);
        for zxid in 1..=3 {
            feed.publish(changed(zxid));
        }
        let mut subscription = feed.subscribe(Some(1), || 3);
        assert_eq!(subscription.from, 1);
        assert_eq!(zxids(&subscription.replay), Some(vec![2, 3]));
        feed.publish(changed(4));
        assert!(matches!(
            subscription.live.try_recv(),
            Ok(Published::Changes { zxid: 4, .. })
        ));
        assert!(subscription.live.try_recv().is_err(), "nothing twice");

        let fresh = feed.subscribe(None, || 4);
        assert_eq!((fresh.from, zxids(&fresh.replay)), (4, Some(vec![])));
        let ahead = feed.subscribe(Some(9), || 4);
        assert_eq!(ahead.from, 4, "no starting from a state not reached");
    }

    #[test]
    fn a_subscriber_from_before_the_history_or_a_snapshot_must_resynchronize() {
        let feed = ChangeFeed::with_history(2, usize::MAX, 0);
        for zxid in 1..=3 {
            feed.publish(changed(zxid));
        }
        assert_eq!(zxids(&feed.subscribe(Some(0), || 3).replay), None);
        assert_eq!(
            zxids(&feed.subscribe(Some(1), || 3).replay),
            Some(vec![2, 3])
        );

        feed.publish(Published::Reset { zxid: 10 });
        assert_eq!(zxids(&feed.subscribe(Some(3), || 10).replay), None);
        assert_eq!(zxids(&feed.subscribe(Some(10), || 10).replay), Some(vec![]));

        let started_late = ChangeFeed::new(5);
        assert_eq!(zxids(&started_late.subscribe(Some(4), || 5).replay), None);
    }

    #[test]
    fn the_history_is_bounded_by_the_size_of_the_data_it_holds() {
        let big = |zxid: u64| Published::Changes {
            zxid,
            changes: Arc::new(vec![Change {
                kind: ChangeKind::DataChanged,
                path: "/big".into(),
                data: Some(bytes::Bytes::from(vec![0u8; 1000])),
            }]),
        };
        // Room for about two of them.
        let feed = ChangeFeed::with_history(100, 2500, 0);
        for zxid in 1..=5 {
            feed.publish(big(zxid));
        }
        assert_eq!(
            zxids(&feed.subscribe(Some(3), || 5).replay),
            Some(vec![4, 5])
        );
        assert_eq!(zxids(&feed.subscribe(Some(2), || 5).replay), None);
    }
}
