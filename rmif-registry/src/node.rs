//! What a client learns about a node: its [`Stat`], and the kinds of change a watch reports.

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// Largest data a node may hold.
pub const MAX_DATA_LEN: usize = 1024 * 1024;

/// Checks that `data` fits in the node at `path`.
pub fn check_data_len(path: &str, data: &[u8]) -> Result<(), RegistryError> {
    if data.len() > MAX_DATA_LEN {
        return Err(RegistryError::TooLarge {
            path: path.to_owned(),
            size: data.len(),
            max: MAX_DATA_LEN,
        });
    }
    Ok(())
}

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

/// What happened to a node, as watches report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The node was created.
    Created,
    /// The node was deleted.
    Deleted,
    /// The node's data changed.
    DataChanged,
    /// A child was added or removed.
    ChildrenChanged,
}
