//! The replicated state machine: a ZooKeeper-like tree of nodes with sessions, ephemeral and
//! sequential nodes, versions and atomic multi-operations.
//!
//! Every member applies the same committed entries in the same order to its own [`Tree`], so
//! everything here is deterministic: no clocks (times come from the entry), no randomness (the
//! session secret comes from the entry), no iteration over unordered maps where order shows.

mod command;
mod node;
mod nodes;

use std::collections::{BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use rmif_registry::node::check_data_len;
use rmif_registry::op::{MAX_MULTI_OPS, Op, OpResult};
use rmif_registry::{ChangeKind, RegistryError, Stat, path};
use serde::{Deserialize, Serialize};

pub use command::{Action, ActionResult, Command, Outcome, Proposer, SessionOwner};
use node::Node;
use nodes::Nodes;

use crate::error::ServerError;

/// Outcomes remembered per session, so that a retried request is answered, not re-applied.
const REMEMBERED_OUTCOMES: usize = 64;

/// A change to the tree, for watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// To which node.
    pub path: String,
    /// The node's data after a creation or a data change (shared with the tree, not copied).
    pub data: Option<Bytes>,
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The entry's index.
    pub zxid: u64,
    /// Its result.
    pub outcome: Outcome,
    /// The changes it made (none if it failed or was a deduplicated retry).
    pub changes: Vec<Change>,
}

/// A session as the replicated state knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its id: the zxid of the entry that opened it.
    pub id: u64,
    /// What resuming it requires.
    pub secret: u64,
    /// Time without heartbeats after which the leader expires it.
    pub timeout_ms: u64,
    /// Its ephemeral nodes.
    pub ephemerals: BTreeSet<String>,
    /// The connection that holds it.
    pub owner: SessionOwner,
    recent: VecDeque<(u64, Outcome)>,
}

/// How to undo one mutation when a multi fails part-way.
enum Undo {
    Inserted(String),
    Removed(String, Node),
    Data {
        path: String,
        data: Bytes,
        stat: Stat,
    },
    Linked {
        parent: String,
        name: String,
        stat: Stat,
        next_sequence: u64,
    },
    Unlinked {
        parent: String,
        name: String,
        stat: Stat,
    },
    EphemeralAdded(u64, String),
    EphemeralRemoved(u64, String),
}

/// The mutations of one entry, with their undo records and resulting changes.
struct Txn {
    zxid: u64,
    time_ms: u64,
    session: Option<u64>,
    undo: Vec<Undo>,
    changes: Vec<Change>,
}

impl Txn {
    fn change(&mut self, kind: ChangeKind, path: &str) {
        self.changes.push(Change {
            kind,
            path: path.to_owned(),
            data: None,
        });
    }

    /// A change that leaves the node holding `data`.
    fn change_to(&mut self, kind: ChangeKind, path: &str, data: &Bytes) {
        self.changes.push(Change {
            kind,
            path: path.to_owned(),
            data: Some(data.clone()),
        });
    }
}

/// The tree and its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    nodes: Nodes,
    /// Persistent, like the nodes: a snapshot's clone of the tree shares it.
    sessions: imbl::OrdMap<u64, SessionRecord>,
    last_zxid: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

/// A snapshot as read back.
#[derive(Deserialize)]
struct Image {
    last_zxid: u64,
    nodes: Vec<(String, Node)>,
    sessions: Vec<SessionRecord>,
}

/// A snapshot as written: the same encoding as [`Image`], streamed from the tree's maps (both
/// ordered: nodes by path, sessions by id) so that taking a snapshot copies no node and sorts
/// nothing.
#[derive(Serialize)]
struct ImageRef<'a> {
    last_zxid: u64,
    nodes: InOrder<&'a Nodes>,
    sessions: InOrder<&'a imbl::OrdMap<u64, SessionRecord>>,
}

/// A map written as a sequence, in its own order, with its length up front (MessagePack's
/// array header needs it; an unknown length would be buffered first).
struct InOrder<M>(M);

impl Serialize for InOrder<&Nodes> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_all(
            serializer,
            self.0.iter().map(|(path, node)| (path.as_str(), node)),
        )
    }
}

impl Serialize for InOrder<&imbl::OrdMap<u64, SessionRecord>> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_all(serializer, self.0.values())
    }
}

/// Serializes `items` as one sequence.
fn serialize_all<S: serde::Serializer, T: Serialize>(
    serializer: S,
    items: impl ExactSizeIterator<Item = T>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut sequence = serializer.serialize_seq(Some(items.len()))?;
    for item in items {
        sequence.serialize_element(&item)?;
    }
    sequence.end()
}

fn no_node(path: &str) -> RegistryError {
    RegistryError::NoNode {
        path: path.to_owned(),
    }
}

fn check_version(path: &str, stat: &Stat, expected: Option<u32>) -> Result<(), RegistryError> {
    match expected {
        Some(expected) if expected != stat.version => Err(RegistryError::BadVersion {
            path: path.to_owned(),
            expected,
            actual: stat.version,
        }),
        _ => Ok(()),
    }
}

impl Tree {
    /// A tree holding only the root `/`.
    pub fn new() -> Self {
        let mut nodes = Nodes::default();
        nodes.insert("/".to_owned(), Node::default());
        Tree {
            nodes,
            sessions: imbl::OrdMap::new(),
            last_zxid: 0,
        }
    }

    /// Index of the last entry applied.
    pub fn last_zxid(&self) -> u64 {
        self.last_zxid
    }

    /// Records that entry `zxid` applied without touching the tree (empty and configuration
    /// entries).
    pub fn skip(&mut self, zxid: u64) {
        self.last_zxid = zxid;
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, zxid: u64, command: &Command) -> Applied {
        self.last_zxid = zxid;
        let applied = |outcome, changes| Applied {
            zxid,
            outcome,
            changes,
        };
        if let Some(call) = command.session {
            match self.sessions.get(&call.session) {
                None => {
                    let expired = RegistryError::SessionExpired {
                        session: call.session,
                    };
                    return applied(Err(expired), Vec::new());
                }
                Some(session) => {
                    if let Some((_, outcome)) =
                        session.recent.iter().find(|(id, _)| *id == call.request_id)
                    {
                        return applied(outcome.clone(), Vec::new());
                    }
                }
            }
        }
        let mut txn = Txn {
            zxid,
            time_ms: command.time_ms,
            session: command.session.map(|c| c.session),
            undo: Vec::new(),
            changes: Vec::new(),
        };
        let outcome = self.run(&mut txn, &command.action);
        if outcome.is_err() {
            self.rollback(std::mem::take(&mut txn.undo));
            txn.changes.clear();
        }
        if let Some(call) = command.session
            && let Some(session) = self.sessions.get_mut(&call.session)
        {
            if session.recent.len() >= REMEMBERED_OUTCOMES {
                session.recent.pop_front();
            }
            session.recent.push_back((call.request_id, outcome.clone()));
        }
        applied(outcome, txn.changes)
    }

    fn run(&mut self, txn: &mut Txn, action: &Action) -> Outcome {
        match action {
            Action::Create {
                path,
                data,
                ephemeral,
                sequential,
            } => self
                .create(txn, path, data, *ephemeral, *sequential)
                .map(ActionResult::from),
            Action::Set {
                path,
                data,
                version,
            } => self.set(txn, path, data, *version).map(ActionResult::from),
            Action::Delete { path, version } => self
                .delete_checked(txn, path, *version)
                .map(ActionResult::from),
            Action::Check { path, version } => self.check(path, *version).map(ActionResult::from),
            Action::Multi(ops) => {
                if ops.len() > MAX_MULTI_OPS {
                    return Err(RegistryError::BadRequest(format!(
                        "a multi holds at most {MAX_MULTI_OPS} operations, not {}",
                        ops.len()
                    )));
                }
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    results.push(self.run_op(txn, op)?);
                }
                Ok(ActionResult::Multi(results))
            }
            Action::OpenSession {
                timeout_ms,
                secret,
                owner,
            } => {
                let session = SessionRecord {
                    id: txn.zxid,
                    secret: *secret,
                    timeout_ms: *timeout_ms,
                    ephemerals: BTreeSet::new(),
                    owner: owner.clone(),
                    recent: VecDeque::new(),
                };
                self.sessions.insert(session.id, session);
                Ok(ActionResult::SessionOpened {
                    session: txn.zxid,
                    timeout_ms: *timeout_ms,
                })
            }
            Action::AttachSession {
                session,
                secret,
                owner,
            } => match self.sessions.get_mut(session) {
                None => Err(RegistryError::SessionExpired { session: *session }),
                Some(found) if found.secret != *secret => Err(RegistryError::SessionRejected {
                    session: *session,
                    reason: "wrong secret".to_owned(),
                }),
                Some(found) => {
                    found.owner = owner.clone();
                    Ok(ActionResult::SessionAttached {
                        session: *session,
                        timeout_ms: found.timeout_ms,
                    })
                }
            },
            Action::CloseSession { session } => match self.end_session(txn, *session) {
                Some(deleted) => Ok(ActionResult::SessionClosed { deleted }),
                None => Err(RegistryError::SessionExpired { session: *session }),
            },
            Action::ExpireSessions { sessions } => {
                let expired = sessions
                    .iter()
                    .filter(|id| self.end_session(txn, **id).is_some())
                    .copied()
                    .collect();
                Ok(ActionResult::Expired { sessions: expired })
            }
        }
    }

    /// One operation of a client's multi.
    fn run_op(&mut self, txn: &mut Txn, op: &Op) -> Result<OpResult, RegistryError> {
        match op {
            Op::Create {
                path,
                data,
                ephemeral,
                sequential,
            } => self.create(txn, path, data, *ephemeral, *sequential),
            Op::Set {
                path,
                data,
                version,
            } => self.set(txn, path, data, *version),
            Op::Delete { path, version } => self.delete_checked(txn, path, *version),
            Op::Check { path, version } => self.check(path, *version),
        }
    }

    fn delete_checked(
        &mut self,
        txn: &mut Txn,
        path: &str,
        version: Option<u32>,
    ) -> Result<OpResult, RegistryError> {
        path::validate(path)?;
        self.delete(txn, path, version).map(|()| OpResult::Deleted)
    }

    fn check(&self, path: &str, version: u32) -> Result<OpResult, RegistryError> {
        path::validate(path)?;
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        check_version(path, &node.stat, Some(version))?;
        Ok(OpResult::Checked)
    }

    fn create(
        &mut self,
        txn: &mut Txn,
        path: &str,
        data: &[u8],
        ephemeral: bool,
        sequential: bool,
    ) -> Result<OpResult, RegistryError> {
        path::validate(path)?;
        if path == "/" {
            return Err(RegistryError::NodeExists {
                path: path.to_owned(),
            });
        }
        check_data_len(path, data)?;
        let owner = match (ephemeral, txn.session) {
            (false, _) => 0,
            (true, Some(session)) => session,
            (true, None) => {
                return Err(RegistryError::BadRequest(format!(
                    "{path}: an ephemeral node needs a session"
                )));
            }
        };
        let parent_path = path::parent(path);
        let parent = self
            .nodes
            .get(parent_path)
            .ok_or_else(|| no_node(parent_path))?;
        if parent.stat.ephemeral_owner != 0 {
            return Err(RegistryError::EphemeralParent {
                path: parent_path.to_owned(),
            });
        }
        let final_path = if sequential {
            format!("{path}{:010}", parent.next_sequence)
        } else {
            path.to_owned()
        };
        if self.nodes.contains(&final_path) {
            return Err(RegistryError::NodeExists { path: final_path });
        }
        let stat = Stat {
            czxid: txn.zxid,
            mzxid: txn.zxid,
            pzxid: txn.zxid,
            ctime_ms: txn.time_ms,
            mtime_ms: txn.time_ms,
            version: 0,
            cversion: 0,
            ephemeral_owner: owner,
            data_length: data.len() as u32,
            num_children: 0,
        };
        let name = path::name(&final_path).to_owned();
        let parent_path = parent_path.to_owned();
        let linked = self.nodes.update(&parent_path, |parent| {
            let undo = Undo::Linked {
                parent: parent_path.clone(),
                name: name.clone(),
                stat: parent.stat,
                next_sequence: parent.next_sequence,
            };
            parent.children.insert(name);
            parent.stat.cversion += 1;
            parent.stat.pzxid = txn.zxid;
            parent.stat.num_children += 1;
            if sequential {
                parent.next_sequence += 1;
            }
            undo
        });
        txn.undo.push(linked.expect("parent checked above"));
        let data = Bytes::copy_from_slice(data);
        self.nodes.insert(
            final_path.clone(),
            Node {
                data: data.clone(),
                stat,
                ..Node::default()
            },
        );
        txn.undo.push(Undo::Inserted(final_path.clone()));
        if owner != 0
            && let Some(session) = self.sessions.get_mut(&owner)
        {
            session.ephemerals.insert(final_path.clone());
            txn.undo
                .push(Undo::EphemeralAdded(owner, final_path.clone()));
        }
        txn.change_to(ChangeKind::Created, &final_path, &data);
        txn.change(ChangeKind::ChildrenChanged, &parent_path);
        Ok(OpResult::Created {
            path: final_path,
            stat,
        })
    }

    fn set(
        &mut self,
        txn: &mut Txn,
        path: &str,
        data: &[u8],
        version: Option<u32>,
    ) -> Result<OpResult, RegistryError> {
        path::validate(path)?;
        check_data_len(path, data)?;
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        check_version(path, &node.stat, version)?;
        let data = Bytes::copy_from_slice(data);
        let (undo, stat) = self
            .nodes
            .update(path, |node| {
                let undo = Undo::Data {
                    path: path.to_owned(),
                    data: std::mem::replace(&mut node.data, data.clone()),
                    stat: node.stat,
                };
                node.stat.version = node.stat.version.wrapping_add(1);
                node.stat.mzxid = txn.zxid;
                node.stat.mtime_ms = txn.time_ms;
                node.stat.data_length = data.len() as u32;
                (undo, node.stat)
            })
            .expect("checked above");
        txn.undo.push(undo);
        txn.change_to(ChangeKind::DataChanged, path, &data);
        Ok(OpResult::Set { stat })
    }

    fn delete(
        &mut self,
        txn: &mut Txn,
        path: &str,
        version: Option<u32>,
    ) -> Result<(), RegistryError> {
        if path == "/" {
            return Err(RegistryError::NotAllowed {
                path: path.to_owned(),
                reason: "the root cannot be deleted".to_owned(),
            });
        }
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        check_version(path, &node.stat, version)?;
        if !node.children.is_empty() {
            return Err(RegistryError::NotEmpty {
                path: path.to_owned(),
            });
        }
        let node = self.nodes.remove(path).expect("checked above");
        let owner = node.stat.ephemeral_owner;
        txn.undo.push(Undo::Removed(path.to_owned(), node));
        let parent_path = path::parent(path);
        let name = path::name(path);
        let unlinked = self.nodes.update(parent_path, |parent| {
            let undo = Undo::Unlinked {
                parent: parent_path.to_owned(),
                name: name.to_owned(),
                stat: parent.stat,
            };
            parent.children.remove(name);
            parent.stat.cversion += 1;
            parent.stat.pzxid = txn.zxid;
            parent.stat.num_children -= 1;
            undo
        });
        txn.undo.extend(unlinked);
        if owner != 0
            && let Some(session) = self.sessions.get_mut(&owner)
            && session.ephemerals.remove(path)
        {
            txn.undo
                .push(Undo::EphemeralRemoved(owner, path.to_owned()));
        }
        txn.change(ChangeKind::Deleted, path);
        txn.change(ChangeKind::ChildrenChanged, parent_path);
        Ok(())
    }

    /// Removes a session and its ephemeral nodes; `None` if there was no such session.
    fn end_session(&mut self, txn: &mut Txn, id: u64) -> Option<Vec<String>> {
        let session = self.sessions.remove(&id)?;
        let deleted: Vec<String> = session.ephemerals.into_iter().collect();
        for path in &deleted {
            // Ephemeral nodes have no children, so this cannot fail.
            let _ = self.delete(txn, path, None);
        }
        Some(deleted)
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Inserted(path) => {
                    self.nodes.remove(&path);
                }
                Undo::Removed(path, node) => {
                    self.nodes.insert(path, node);
                }
                Undo::Data { path, data, stat } => {
                    self.nodes.update(&path, |node| {
                        node.data = data;
                        node.stat = stat;
                    });
                }
                Undo::Linked {
                    parent,
                    name,
                    stat,
                    next_sequence,
                } => {
                    self.nodes.update(&parent, |node| {
                        node.children.remove(&name);
                        node.stat = stat;
                        node.next_sequence = next_sequence;
                    });
                }
                Undo::Unlinked { parent, name, stat } => {
                    self.nodes.update(&parent, |node| {
                        node.children.insert(name);
                        node.stat = stat;
                    });
                }
                Undo::EphemeralAdded(session, path) => {
                    if let Some(session) = self.sessions.get_mut(&session) {
                        session.ephemerals.remove(&path);
                    }
                }
                Undo::EphemeralRemoved(session, path) => {
                    if let Some(session) = self.sessions.get_mut(&session) {
                        session.ephemerals.insert(path);
                    }
                }
            }
        }
    }

    /// A node's data and stat.
    pub fn get(&self, path: &str) -> Result<(Vec<u8>, Stat), RegistryError> {
        path::validate(path)?;
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        Ok((node.data.to_vec(), node.stat))
    }

    /// A node's stat.
    pub fn stat(&self, path: &str) -> Result<Stat, RegistryError> {
        path::validate(path)?;
        Ok(self.nodes.get(path).ok_or_else(|| no_node(path))?.stat)
    }

    /// A node's children's names, sorted, and its stat.
    pub fn children(&self, path: &str) -> Result<(Vec<String>, Stat), RegistryError> {
        path::validate(path)?;
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        Ok((node.children.iter().cloned().collect(), node.stat))
    }

    /// The session with this id.
    pub fn session(&self, id: u64) -> Option<&SessionRecord> {
        self.sessions.get(&id)
    }

    /// Every session.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionRecord> {
        self.sessions.values()
    }

    /// Number of nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A hash of the whole state (nodes, data, stats, sessions) that is equal on two members
    /// exactly when they hold the same state; used to check that members converged. The nodes'
    /// part is kept current by every change (a member's status reports it, and a walk over a
    /// large tree under its lock would stall writes); sessions, far fewer, are hashed here.
    pub fn digest(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        self.nodes.digest().hash(&mut hasher);
        for session in self.sessions.values() {
            session.id.hash(&mut hasher);
            session.secret.hash(&mut hasher);
            session.timeout_ms.hash(&mut hasher);
            session.ephemerals.hash(&mut hasher);
            session.owner.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Serializes the whole state for a Raft snapshot (see [`Tree::to_snapshot_into`]).
    #[cfg(test)]
    pub fn to_snapshot(&self) -> Vec<u8> {
        self.to_snapshot_into(Vec::new())
    }

    /// Serializes the whole state for a Raft snapshot, appended to `bytes` (emptied first).
    /// Given the buffer of an earlier snapshot, with room for this one, a hundred-megabyte image
    /// neither grows by doubling (copies) nor touches fresh pages the kernel must zero first.
    pub fn to_snapshot_into(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.clear();
        let image = ImageRef {
            last_zxid: self.last_zxid,
            nodes: InOrder(&self.nodes),
            sessions: InOrder(&self.sessions),
        };
        rmp_serde::encode::write(&mut bytes, &image).expect("the tree always serializes");
        bytes
    }

    /// Restores a state serialized by [`Tree::to_snapshot_into`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, ServerError> {
        let image: Image = rmp_serde::from_slice(bytes).map_err(ServerError::Snapshot)?;
        Ok(Tree {
            nodes: image.nodes.into_iter().collect(),
            sessions: image.sessions.into_iter().map(|s| (s.id, s)).collect(),
            last_zxid: image.last_zxid,
        })
    }
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
