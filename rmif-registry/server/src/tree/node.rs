//! One node of the tree: data, stat and children.

use bytes::Bytes;
use rmif_registry::Stat;
use serde::ser::SerializeSeq as _;
use serde::{Deserialize, Serialize, Serializer};

/// A node: data, stat, children's names and the counter for sequential children.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Node {
    /// Shared with the changes that carry it to watchers (a clone is a reference count).
    /// Encoded as MessagePack bin, as it always was.
    pub(crate) data: Bytes,
    pub(crate) stat: Stat,
    #[serde(serialize_with = "serialize_children")]
    pub(crate) children: imbl::OrdSet<String>,
    pub(crate) next_sequence: u64,
}

/// Writes a node's children as the derived code would, without starting a walk of an empty set:
/// most nodes are leaves, and starting one (a cursor into the persistent set) took a sixth of a
/// snapshot's encoding.
fn serialize_children<S: Serializer>(
    children: &imbl::OrdSet<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if children.is_empty() {
        serializer.serialize_seq(Some(0))?.end()
    } else {
        children.serialize(serializer)
    }
}
