//! One node of the tree: data, stat and children.

use bytes::Bytes;
use rmif_registry::Stat;
use serde::{Deserialize, Serialize};

/// A node: data, stat, children's names and the counter for sequential children.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Node {
    /// Shared with the changes that carry it to watchers (a clone is a reference count).
    /// Encoded as MessagePack bin, as it always was.
    pub(crate) data: Bytes,
    pub(crate) stat: Stat,
    pub(crate) children: imbl::OrdSet<String>,
    pub(crate) next_sequence: u64,
}
