//! What a Raft entry carries: one operation on the tree, with who proposed it and on behalf of
//! which session, and what applying it produced.

use serde::{Deserialize, Serialize};

use super::node::Stat;
use crate::error::RegistryError;

/// Who proposed an entry: the member that waits for it to apply, and its proposal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proposer {
    /// Raft id of the member.
    pub member: u64,
    /// Random per start of the member, so that entries proposed before a restart (and applied
    /// again from the log after it) never match a new proposal.
    pub incarnation: u64,
    /// Its proposal counter.
    pub seq: u64,
}

/// A request made within a session: the pair the state machine deduplicates retries by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionCall {
    /// The session.
    pub session: u64,
    /// The client's request number within the session (increasing).
    pub request_id: u64,
}

/// The connection that holds a session: which member it is connected to, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionOwner {
    /// The member's Raft id.
    pub member: u64,
    /// The client's address as that member sees it (one TCP connection).
    pub connection: String,
}

/// One replicated entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Who waits for the outcome.
    pub proposer: Proposer,
    /// Wall-clock time at the proposer, stamped into stats (ctime, mtime).
    pub time_ms: u64,
    /// The session the operation belongs to, if any.
    pub session: Option<SessionCall>,
    /// The operation.
    pub op: Op,
}

/// An operation on the tree or its sessions.
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
    /// Several operations, applied atomically: all or none.
    Multi(Vec<Op>),
    /// Start a session, held by the connection `owner`.
    OpenSession {
        /// Time without heartbeats after which the session expires.
        timeout_ms: u64,
        /// What a client must present to resume the session on another connection.
        secret: u64,
        /// The connection that holds it.
        owner: SessionOwner,
    },
    /// Move a session to another connection (after a failover); the old one is refused from
    /// then on.
    AttachSession {
        /// The session.
        session: u64,
        /// Its secret: only the holder can move it.
        secret: u64,
        /// The new holder.
        owner: SessionOwner,
    },
    /// End a session at its holder's request, deleting its ephemeral nodes.
    CloseSession {
        /// The session.
        session: u64,
    },
    /// End sessions whose heartbeats stopped (proposed by the leader only).
    ExpireSessions {
        /// The sessions.
        sessions: Vec<u64>,
    },
}

/// The result of an operation.
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
    /// Results of a multi, in order.
    Multi(Vec<OpResult>),
    /// A session started.
    SessionOpened {
        /// Its id.
        session: u64,
        /// Its timeout.
        timeout_ms: u64,
    },
    /// A session moved to another connection.
    SessionAttached {
        /// Its id.
        session: u64,
        /// Its timeout.
        timeout_ms: u64,
    },
    /// A session ended and its ephemeral nodes are gone.
    SessionClosed {
        /// Ephemeral nodes deleted with it.
        deleted: Vec<String>,
    },
    /// Sessions expired.
    Expired {
        /// The sessions that existed and are now gone.
        sessions: Vec<u64>,
    },
}

/// What applying an operation produced: a result or a typed error.
pub type Outcome = Result<OpResult, RegistryError>;
