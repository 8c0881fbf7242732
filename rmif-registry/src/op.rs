//! The writes a client may ask for: the operations of a `multi`, their results, and the session
//! call that makes a retried write apply once.
//!
//! Only what a client may ask is here. Session bookkeeping that only a registry member logs
//! (opening, moving and expiring sessions) is the server's own and cannot be expressed with
//! these types.

use serde::{Deserialize, Serialize};

use crate::node::Stat;

/// Most operations in one multi.
pub const MAX_MULTI_OPS: usize = 1000;

/// A request made within a session: the pair the registry deduplicates retries by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionCall {
    /// The session.
    pub session: u64,
    /// The client's request number within the session (increasing).
    pub request_id: u64,
}

/// One operation of an atomic [`multi`](crate::RegistryClient::multi).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a node.
    Create {
        /// Its path (for a sequential node: the prefix of the name).
        path: String,
        /// Its data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Deleted when the creating session ends.
        ephemeral: bool,
        /// A 10-digit sequence number is appended to the name.
        sequential: bool,
    },
    /// Replace a node's data, optionally only at a given version.
    Set {
        /// The path.
        path: String,
        /// The new data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Expected data version.
        version: Option<u32>,
    },
    /// Delete a node without children, optionally only at a given version.
    Delete {
        /// The path.
        path: String,
        /// Expected data version.
        version: Option<u32>,
    },
    /// Fail (the whole multi) unless the node is at `version`.
    Check {
        /// The path.
        path: String,
        /// Expected data version.
        version: u32,
    },
}

impl Op {
    /// The node the operation is about.
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Set { path, .. }
            | Op::Delete { path, .. }
            | Op::Check { path, .. } => path,
        }
    }
}

/// The result of one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// The node was created at this path (which has the sequence number, if any).
    Created {
        /// Final path.
        path: String,
        /// Its stat.
        stat: Stat,
    },
    /// The data was replaced.
    Set {
        /// The new stat.
        stat: Stat,
    },
    /// The node was deleted.
    Deleted,
    /// The check passed.
    Checked,
}
