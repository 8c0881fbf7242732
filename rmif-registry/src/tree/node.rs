//! One node of the tree and its stat.

use serde::{Deserialize, Serialize};

/// Metadata of a node, as in ZooKeeper.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stat {
    /// zxid (Raft index) of the entry that created the node.
    pub czxid: u64,
    /// zxid of the entry that last changed its data.
    pub mzxid: u64,
    /// zxid of the entry that last added or removed a child.
    pub pzxid: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub ctime_ms: u64,
    /// Time of the last data change.
    pub mtime_ms: u64,
    /// Data version: incremented by every `set`.
    pub version: u32,
    /// Children version: incremented by every child creation or deletion.
    pub cversion: u32,
    /// Session that owns an ephemeral node; 0 for persistent nodes.
    pub ephemeral_owner: u64,
    /// Bytes of data.
    pub data_length: u32,
    /// Number of children.
    pub num_children: u32,
}

/// A node: data, stat, children's names and the counter for sequential children.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Node {
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
    pub(crate) stat: Stat,
    pub(crate) children: imbl::OrdSet<String>,
    pub(crate) next_sequence: u64,
}
