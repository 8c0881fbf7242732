//! [`WatchEvents`]: a persistent or recursive watch as a plain sequence of node events. It
//! hides the stream's first message (the watched nodes' state, its baseline), keeps what it
//! knows of each watched node, and turns a resync into the events the caller missed, by
//! comparing the resynchronized state with what it knew ([`diff`]).

use std::collections::{BTreeMap, VecDeque};

use super::{WatchOptions, Watcher};
use crate::api::{NodeSnapshot, WatchMessage};
use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::node::{ChangeKind, Stat};

/// One change of a watched node, as [`WatchEvents::next`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The zxid of the change; for an event rebuilt from a resync, the resync's zxid (the
    /// change happened at or before it, after the previous event).
    pub zxid: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// To which node.
    pub path: String,
    /// The node's data after a creation or a data change, when the watch asked for it
    /// ([`WatchOptions::with_data`]).
    pub data: Option<Vec<u8>>,
    /// True for an event rebuilt from a resync rather than reported by the registry.
    pub resynced: bool,
}

/// What [`WatchEvents`] knows of one node: the zxids that tell whether it is the same node and
/// whether its data or its children changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    /// The entry that created it: a node deleted and created again has another.
    czxid: u64,
    /// The entry that last changed its data.
    mzxid: u64,
    /// The entry that last added or removed one of its children.
    pzxid: u64,
}

impl From<&Stat> for Known {
    fn from(stat: &Stat) -> Self {
        Known {
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            pzxid: stat.pzxid,
        }
    }
}

/// The watched nodes, by path.
pub(crate) type KnownNodes = BTreeMap<String, Known>;

/// The changes that turn `before` into `after`, in an order a caller can apply to a copy of the
/// tree: deletions, deepest first; then creations, parents first; then data changes and
/// children changes of nodes that are the same node on both sides, by path.
///
/// A node is the same on both sides if it has the same `czxid`: one deleted and created again is
/// reported deleted, then created. A data change is a different `mzxid`, a children change a
/// different `pzxid`. A node that did not exist on either side is not reported at all.
pub(crate) fn diff(before: &KnownNodes, after: &KnownNodes) -> Vec<(ChangeKind, String)> {
    let replaced = |path: &str| match (before.get(path), after.get(path)) {
        (Some(old), Some(new)) => old.czxid != new.czxid,
        _ => false,
    };
    let mut changes = Vec::new();
    // A child's path sorts after its parent's, so reverse order removes children first.
    for path in before.keys().rev() {
        if !after.contains_key(path) || replaced(path) {
            changes.push((ChangeKind::Deleted, path.clone()));
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) || replaced(path) {
            changes.push((ChangeKind::Created, path.clone()));
        }
    }
    for (path, new) in after {
        let Some(old) = before.get(path) else {
            continue;
        };
        if old.czxid != new.czxid {
            continue;
        }
        if old.mzxid != new.mzxid {
            changes.push((ChangeKind::DataChanged, path.clone()));
        }
        if old.pzxid != new.pzxid {
            changes.push((ChangeKind::ChildrenChanged, path.clone()));
        }
    }
    changes
}

/// Applies one reported change at `zxid` to what is known, as the registry applied it to the
/// node's stat.
fn apply(known: &mut KnownNodes, zxid: u64, kind: ChangeKind, path: &str) {
    match kind {
        ChangeKind::Created => {
            known.insert(
                path.to_owned(),
                Known {
                    czxid: zxid,
                    mzxid: zxid,
                    pzxid: zxid,
                },
            );
        }
        ChangeKind::Deleted => {
            known.remove(path);
        }
        ChangeKind::DataChanged => {
            if let Some(node) = known.get_mut(path) {
                node.mzxid = zxid;
            }
        }
        ChangeKind::ChildrenChanged => {
            if let Some(node) = known.get_mut(path) {
                node.pzxid = zxid;
            }
        }
    }
}

fn known_nodes(state: &[NodeSnapshot]) -> KnownNodes {
    state
        .iter()
        .map(|node| (node.path.clone(), Known::from(&node.stat)))
        .collect()
}

/// A persistent or recursive watch as plain events: created, data changed, children changed,
/// deleted, each with its zxid, in zxid order, with no armed message and no resync to handle.
/// Made by [`RegistryClient::watch_events`].
///
/// It starts from the watched nodes' state (asked of the registry with the watch, so it costs
/// no read) and keeps, for each watched node, the zxids of its creation, its last data change
/// and its last children change (not its data). The registry reports every change in order,
/// replaying after a failover what the watch missed, unless it no longer knows them all (after
/// a long disconnection, or a member restored from a snapshot): then it sends the watched nodes'
/// current state instead, a resync. `WatchEvents` compares that state with what it knew and
/// yields the difference as events with the resync's zxid and [`NodeEvent::resynced`] set, so
/// that the events seen, applied in order, always lead to the registry's state.
///
/// What a resync can and cannot rebuild:
/// - a node created, deleted, or deleted and created again while the watch was cut off is
///   reported as such (deleted, then created); deletions come first, children before parents,
///   then creations, parents first, then data and children changes, by path;
/// - several changes of one node's data appear as one data change (with the current data, if
///   the watch asked for data), and several changes of its children as one children change;
/// - a node created and deleted again while the watch was cut off is not seen at all, nor is a
///   data change of a node that was then deleted;
/// - every rebuilt event carries the resync's zxid, not the zxid of the change itself.
///
/// ```
/// use rmif_registry::api::WatchMode;
/// use rmif_registry::{ChangeKind, CreateMode, RegistryClient};
/// # use rmif_registry_server::{RegistryConfig, RegistryServer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let data = tempfile::tempdir()?;
/// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
/// # let members = [member.client_addr()];
/// let client = RegistryClient::connect(&members);
/// client.create("/jobs", b"", CreateMode::PERSISTENT).await?;
/// let mut events = client.watch_events("/jobs", WatchMode::Recursive).await?;
/// assert!(events.nodes().eq(["/jobs"]), "it starts from the watched nodes' state");
/// client.create("/jobs/a", b"", CreateMode::PERSISTENT).await?;
/// let created = events.next().await?;
/// assert_eq!((created.kind, created.path.as_str()), (ChangeKind::Created, "/jobs/a"));
/// let parent = events.next().await?;
/// assert_eq!((parent.kind, parent.path.as_str()), (ChangeKind::ChildrenChanged, "/jobs"));
/// # member.shutdown().await;
/// # Ok(()) }
/// ```
pub struct WatchEvents {
    watcher: Watcher,
    with_data: bool,
    known: KnownNodes,
    /// The zxid of the last message applied.
    zxid: u64,
    ready: VecDeque<NodeEvent>,
    /// The error the watch ended with, returned again by every later call.
    ended: Option<RegistryError>,
}

impl std::fmt::Debug for WatchEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchEvents")
            .field("watcher", &self.watcher)
            .field("zxid", &self.zxid)
            .field("nodes", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl WatchEvents {
    pub(crate) async fn start(
        client: RegistryClient,
        path: &str,
        options: WatchOptions,
    ) -> Result<WatchEvents, RegistryError> {
        if options.mode.is_one_shot() {
            return Err(RegistryError::BadRequest(format!(
                "{path}: watch_events follows persistent and recursive watches, not the one-shot {:?}",
                options.mode
            )));
        }
        let options = WatchOptions {
            initial_state: true,
            ..options
        };
        let mut watcher = Watcher::start(client, path, options).await?;
        let first = watcher.next().await.ok_or_else(|| {
            RegistryError::NoQuorum("the watch stopped before it was armed".to_owned())
        })??;
        let mut events = WatchEvents {
            watcher,
            with_data: options.with_data,
            known: KnownNodes::new(),
            zxid: first.zxid,
            ready: VecDeque::new(),
            ended: None,
        };
        // The state the watch starts from is the baseline, not news.
        if let Some(state) = &first.resync {
            events.known = known_nodes(state);
        }
        Ok(events)
    }

    /// The next event. An error ends the watch (a failure no member can mend, such as a path
    /// that is not valid); every later call returns it again.
    pub async fn next(&mut self) -> Result<NodeEvent, RegistryError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if let Some(error) = &self.ended {
                return Err(error.clone());
            }
            match self.watcher.next().await {
                Some(Ok(message)) => self.take(message),
                Some(Err(error)) => self.ended = Some(error),
                None => self.ended = Some(RegistryError::NoQuorum("the watch stopped".to_owned())),
            }
        }
    }

    /// Turns one message of the watch into events.
    fn take(&mut self, message: WatchMessage) {
        if message.zxid <= self.zxid && message.resync.is_none() {
            return; // armed again, or already applied
        }
        self.zxid = self.zxid.max(message.zxid);
        if let Some(state) = message.resync {
            let after = known_nodes(&state);
            let data: BTreeMap<&str, &[u8]> = state
                .iter()
                .map(|node| (node.path.as_str(), node.data.as_slice()))
                .collect();
            for (kind, path) in diff(&self.known, &after) {
                let data = match kind {
                    ChangeKind::Created | ChangeKind::DataChanged if self.with_data => {
                        data.get(path.as_str()).map(|d| d.to_vec())
                    }
                    _ => None,
                };
                self.ready.push_back(NodeEvent {
                    zxid: message.zxid,
                    kind,
                    path,
                    data,
                    resynced: true,
                });
            }
            self.known = after;
            return;
        }
        for event in message.events {
            apply(&mut self.known, message.zxid, event.kind, &event.path);
            self.ready.push_back(NodeEvent {
                zxid: message.zxid,
                kind: event.kind,
                path: event.path,
                data: event.data,
                resynced: false,
            });
        }
    }

    /// The zxid of the newest change (or state) this watch has taken in.
    pub fn zxid(&self) -> u64 {
        self.zxid
    }

    /// The paths of the watched nodes that exist as far as this watch knows (after the events
    /// it has taken in, which may be ahead of those [`WatchEvents::next`] has returned), in
    /// path order.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.known.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChangeKind::{ChildrenChanged, Created, DataChanged, Deleted};

    /// Nodes from `(path, czxid, mzxid, pzxid)`.
    fn nodes(list: &[(&str, u64, u64, u64)]) -> KnownNodes {
        list.iter()
            .map(|&(path, czxid, mzxid, pzxid)| {
                (
                    path.to_owned(),
                    Known {
                        czxid,
                        mzxid,
                        pzxid,
                    },
                )
            })
            .collect()
    }

    fn changes(list: &[(ChangeKind, &str)]) -> Vec<(ChangeKind, String)> {
        list.iter()
            .map(|(kind, path)| (*kind, (*path).to_owned()))
            .collect()
    }

    #[test]
    fn the_same_state_has_no_changes() {
        let state = nodes(&[("/a", 1, 1, 1), ("/a/b", 2, 5, 2)]);
        assert!(diff(&state, &state).is_empty());
        assert!(diff(&KnownNodes::new(), &KnownNodes::new()).is_empty());
    }

    #[test]
    fn a_new_node_is_created_and_a_missing_one_deleted() {
        let before = nodes(&[("/a", 1, 1, 1), ("/a/old", 2, 2, 2)]);
        let after = nodes(&[("/a", 1, 1, 1), ("/a/new", 3, 3, 3)]);
        assert_eq!(
            diff(&before, &after),
            changes(&[(Deleted, "/a/old"), (Created, "/a/new")])
        );
    }

    #[test]
    fn several_data_changes_are_one() {
        let before = nodes(&[("/a", 1, 1, 1)]);
        let after = nodes(&[("/a", 1, 9, 1)]);
        assert_eq!(diff(&before, &after), changes(&[(DataChanged, "/a")]));
    }

    #[test]
    fn a_children_change_is_a_new_pzxid_and_both_kinds_can_come_together() {
        let before = nodes(&[("/a", 1, 1, 1)]);
        let after = nodes(&[("/a", 1, 1, 4)]);
        assert_eq!(diff(&before, &after), changes(&[(ChildrenChanged, "/a")]));
        let after = nodes(&[("/a", 1, 6, 4)]);
        assert_eq!(
            diff(&before, &after),
            changes(&[(DataChanged, "/a"), (ChildrenChanged, "/a")])
        );
    }

    #[test]
    fn a_node_deleted_and_created_again_is_deleted_then_created_and_nothing_else() {
        let before = nodes(&[("/a", 1, 1, 1), ("/a/x", 2, 2, 2)]);
        let after = nodes(&[("/a", 1, 1, 7), ("/a/x", 7, 8, 7)]);
        assert_eq!(
            diff(&before, &after),
            changes(&[
                (Deleted, "/a/x"),
                (Created, "/a/x"),
                (ChildrenChanged, "/a")
            ])
        );
    }

    #[test]
    fn deletions_go_children_first_and_creations_parents_first() {
        let before = nodes(&[
            ("/w", 1, 1, 1),
            ("/w/a", 2, 2, 3),
            ("/w/a/b", 3, 3, 3),
            ("/w/a-b", 4, 4, 4),
        ]);
        let after = nodes(&[
            ("/w", 1, 1, 9),
            ("/w/c", 8, 8, 9),
            ("/w/c/d", 9, 9, 9),
            ("/w/c-d", 10, 10, 10),
        ]);
        assert_eq!(
            diff(&before, &after),
            changes(&[
                (Deleted, "/w/a/b"),
                (Deleted, "/w/a-b"),
                (Deleted, "/w/a"),
                (Created, "/w/c"),
                (Created, "/w/c-d"),
                (Created, "/w/c/d"),
                (ChildrenChanged, "/w"),
            ])
        );
    }

    #[test]
    fn a_subtree_replaced_whole_is_deleted_bottom_up_and_created_top_down() {
        let before = nodes(&[("/w", 1, 1, 2), ("/w/x", 2, 2, 2)]);
        let after = nodes(&[("/w", 5, 5, 6), ("/w/x", 6, 6, 6)]);
        assert_eq!(
            diff(&before, &after),
            changes(&[
                (Deleted, "/w/x"),
                (Deleted, "/w"),
                (Created, "/w"),
                (Created, "/w/x"),
            ])
        );
    }

    #[test]
    fn everything_gone_or_everything_new() {
        let state = nodes(&[("/w", 1, 1, 2), ("/w/x", 2, 3, 2)]);
        assert_eq!(
            diff(&state, &KnownNodes::new()),
            changes(&[(Deleted, "/w/x"), (Deleted, "/w")])
        );
        assert_eq!(
            diff(&KnownNodes::new(), &state),
            changes(&[(Created, "/w"), (Created, "/w/x")])
        );
    }

    #[test]
    fn reported_changes_keep_what_is_known_as_the_registry_keeps_stats() {
        // The state at zxid 1, then changes as the registry reports them: what is known must
        // equal the stats a resync would then carry, so that a resync with nothing missed
        // yields nothing.
        let mut known = nodes(&[("/w", 1, 1, 1)]);
        apply(&mut known, 2, Created, "/w/a");
        apply(&mut known, 2, ChildrenChanged, "/w");
        apply(&mut known, 3, DataChanged, "/w/a");
        apply(&mut known, 4, Created, "/w/b");
        apply(&mut known, 4, ChildrenChanged, "/w");
        apply(&mut known, 5, Deleted, "/w/b");
        apply(&mut known, 5, ChildrenChanged, "/w");
        let registry = nodes(&[("/w", 1, 1, 5), ("/w/a", 2, 3, 2)]);
        assert_eq!(known, registry);
        assert!(diff(&known, &registry).is_empty());
    }

    #[test]
    fn applying_the_diff_leads_to_the_new_state() {
        // Replaying the rebuilt events on the old paths gives the new paths, whatever the mix.
        let before = nodes(&[
            ("/w", 1, 1, 4),
            ("/w/keep", 2, 2, 2),
            ("/w/gone", 3, 3, 3),
            ("/w/again", 4, 4, 4),
        ]);
        let after = nodes(&[
            ("/w", 1, 1, 9),
            ("/w/keep", 2, 8, 2),
            ("/w/again", 9, 9, 9),
            ("/w/new", 7, 7, 7),
        ]);
        let mut paths: std::collections::BTreeSet<String> = before.keys().cloned().collect();
        for (kind, path) in diff(&before, &after) {
            match kind {
                Created => assert!(paths.insert(path.clone()), "{path} created twice"),
                Deleted => assert!(paths.remove(&path), "{path} deleted while absent"),
                DataChanged | ChildrenChanged => assert!(paths.contains(&path), "{path}"),
            }
        }
        assert!(paths.iter().eq(after.keys()));
    }
}
