//! One node of the tree: data, stat and children.

use rmif_registry::Stat;
use serde::{Deserialize, Serialize};

/// A node: data, stat, children's names and the counter for sequential children.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Node {
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
    pub(crate) stat: Stat,
    pub(crate) children: imbl::OrdSet<String>,
    pub(crate) next_sequence: u64,
}
