//! One watch stream on a member: the replay of known changes after the watcher's zxid (or a
//! resync when they are no longer known), then live changes, filtered to the watched nodes, with
//! the nodes' data when the watcher asked for it. A watcher that asked for the initial state
//! gets the watched nodes' state first, then only changes.
//!
//! A watcher that falls behind the live feed is cut off with [`RegistryError::WatchOverrun`]
//! rather than allowed to hold everyone else back; it resumes from its last zxid.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use rmif_core::Streaming;
use tokio::sync::broadcast;

use rmif_registry::api::{NodeSnapshot, WatchEvent, WatchMessage, WatchMode};
use rmif_registry::{ChangeKind, RegistryError, path};

use crate::replica::{Published, ReplicaShared, Subscription};
use crate::tree::{Change, Tree};

/// Most nodes a resync carries; a watch whose subtree is larger must be narrowed.
pub const MAX_RESYNC_NODES: usize = 100_000;

/// Whether `change` concerns a watch of `mode` on `watched`.
fn matches(mode: WatchMode, watched: &str, change: &Change) -> bool {
    match mode {
        WatchMode::Data => {
            change.path == watched
                && matches!(
                    change.kind,
                    ChangeKind::Created | ChangeKind::Deleted | ChangeKind::DataChanged
                )
        }
        WatchMode::Children => {
            change.path == watched
                && matches!(
                    change.kind,
                    ChangeKind::ChildrenChanged | ChangeKind::Deleted
                )
        }
        WatchMode::Persistent => change.path == watched,
        WatchMode::Recursive => path::is_within(&change.path, watched),
    }
}

/// What one watch follows and how.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The watched node.
    pub watched: String,
    /// What of it.
    pub mode: WatchMode,
    /// Events carry the data of created and changed nodes.
    pub with_data: bool,
    /// The stream starts with the watched nodes' state (a fresh watch only).
    pub with_state: bool,
}

impl WatchSpec {
    fn filter(&self, changes: &[Change]) -> Vec<WatchEvent> {
        changes
            .iter()
            .filter(|change| matches(self.mode, &self.watched, change))
            .map(|change| WatchEvent {
                kind: change.kind,
                path: change.path.clone(),
                data: if self.with_data {
                    change.data.as_ref().map(|data| data.to_vec())
                } else {
                    None
                },
            })
            .collect()
    }
}

/// The current state of the watched nodes.
fn resync(tree: &Tree, mode: WatchMode, watched: &str) -> Result<WatchMessage, RegistryError> {
    let mut nodes = Vec::new();
    if mode == WatchMode::Recursive {
        let mut pending = vec![watched.to_owned()];
        while let Some(current) = pending.pop() {
            let Ok((data, stat)) = tree.get(&current) else {
                continue;
            };
            if let Ok((children, _)) = tree.children(&current) {
                pending.extend(children.iter().map(|name| path::join(&current, name)));
            }
            nodes.push(NodeSnapshot {
                path: current,
                stat,
                data,
            });
            if nodes.len() > MAX_RESYNC_NODES {
                return Err(RegistryError::BadRequest(format!(
                    "{watched}: more than {MAX_RESYNC_NODES} nodes to resynchronize; watch a narrower path"
                )));
            }
        }
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
    } else if let Ok((data, stat)) = tree.get(watched) {
        nodes.push(NodeSnapshot {
            path: watched.to_owned(),
            stat,
            data,
        });
    }
    Ok(WatchMessage {
        zxid: tree.last_zxid(),
        events: Vec::new(),
        resync: Some(nodes),
    })
}

struct Cursor {
    shared: Arc<ReplicaShared>,
    spec: WatchSpec,
    queued: VecDeque<Result<WatchMessage, RegistryError>>,
    live: broadcast::Receiver<Published>,
    last_zxid: u64,
    done: bool,
}

impl Cursor {
    fn resync_now(&mut self) -> Result<WatchMessage, RegistryError> {
        let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
        let message = resync(&tree, self.spec.mode, &self.spec.watched)?;
        self.last_zxid = message.zxid;
        Ok(message)
    }

    async fn next(&mut self) -> Option<Result<WatchMessage, RegistryError>> {
        if self.done {
            return None;
        }
        if let Some(queued) = self.queued.pop_front() {
            return Some(self.deliver(queued));
        }
        loop {
            match self.live.recv().await {
                Ok(Published::Changes { zxid, changes }) => {
                    if zxid <= self.last_zxid {
                        continue;
                    }
                    let events = self.spec.filter(&changes);
                    if events.is_empty() {
                        continue;
                    }
                    self.last_zxid = zxid;
                    let message = WatchMessage {
                        zxid,
                        events,
                        resync: None,
                    };
                    return Some(self.deliver(Ok(message)));
                }
                Ok(Published::Reset { .. }) => {
                    let message = self.resync_now();
                    return Some(self.deliver(message));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.done = true;
                    return Some(Err(RegistryError::WatchOverrun {
                        last_zxid: self.last_zxid,
                    }));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// One-shot watches end after their first change (the armed message does not count).
    fn deliver(
        &mut self,
        message: Result<WatchMessage, RegistryError>,
    ) -> Result<WatchMessage, RegistryError> {
        match &message {
            Ok(m) if m.is_armed() => {}
            Ok(_) if self.spec.mode.is_one_shot() => self.done = true,
            Ok(_) => {}
            Err(_) => self.done = true,
        }
        message
    }
}

/// Opens a watch stream from `subscription` (taken after the member applied the watcher's zxid).
/// A spec asking for the initial state gets it first, at the newest applied zxid, and then only
/// the changes after it.
pub fn open(
    shared: Arc<ReplicaShared>,
    spec: WatchSpec,
    subscription: Subscription,
) -> Streaming<WatchMessage, RegistryError> {
    let Subscription { replay, live, from } = subscription;
    let with_state = spec.with_state;
    let mut cursor = Cursor {
        shared,
        spec,
        queued: VecDeque::new(),
        live,
        last_zxid: from,
        done: false,
    };
    if with_state {
        // The state read now covers every change up to its zxid, replayed or live: those are
        // skipped as already delivered.
        let state = cursor.resync_now();
        cursor.queued.push_back(state);
        return stream(cursor);
    }
    cursor.queued.push_back(Ok(WatchMessage {
        zxid: from,
        events: Vec::new(),
        resync: None,
    }));
    match replay {
        Some(replay) => {
            for (zxid, changes) in replay {
                let events = cursor.spec.filter(&changes);
                if !events.is_empty() {
                    cursor.queued.push_back(Ok(WatchMessage {
                        zxid,
                        events,
                        resync: None,
                    }));
                }
                cursor.last_zxid = zxid;
            }
        }
        None => {
            let message = cursor.resync_now();
            cursor.queued.push_back(message);
        }
    }
    stream(cursor)
}

fn stream(cursor: Cursor) -> Streaming<WatchMessage, RegistryError> {
    futures_util::stream::unfold(cursor, |mut cursor| async move {
        cursor.next().await.map(|message| (message, cursor))
    })
    .boxed()
}
