//! What a Raft entry carries, and its encoding in the log: one [`Action`] on the tree, with who
//! proposed it and on behalf of which session, and what applying it produced.
//!
//! The log speaks its own language. A client's writes ([`Op`]) become actions when a member
//! proposes them; the session bookkeeping that only members log (opening, moving, closing and
//! expiring sessions) has actions of its own, which no client request can name.

use rmif_registry::op::{Op, OpResult, SessionCall};
use rmif_registry::{RegistryError, Stat};
use serde::{Deserialize, Serialize};

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
    /// The session the action belongs to, if any.
    pub session: Option<SessionCall>,
    /// The action.
    pub action: Action,
}

impl Command {
    /// The entry's bytes in the log: MessagePack, structs as arrays, enum variants by name.
    pub fn encode(&self) -> Vec<u8> {
        // Strings, byte vectors and integers only: MessagePack encodes them all.
        rmp_serde::to_vec(self).expect("a command always encodes")
    }

    /// Reads an entry written by [`Command::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Command, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// An action on the tree or its sessions. The variant names are part of the log's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// A client's [`Op::Create`].
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
    /// A client's [`Op::Set`].
    Set {
        /// The path.
        path: String,
        /// The new data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Expected data version.
        version: Option<u32>,
    },
    /// A client's [`Op::Delete`].
    Delete {
        /// The path.
        path: String,
        /// Expected data version.
        version: Option<u32>,
    },
    /// A client's [`Op::Check`].
    Check {
        /// The path.
        path: String,
        /// Expected data version.
        version: u32,
    },
    /// A client's operations, applied atomically: all or none.
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

impl From<Op> for Action {
    fn from(op: Op) -> Action {
        match op {
            Op::Create {
                path,
                data,
                ephemeral,
                sequential,
            } => Action::Create {
                path,
                data,
                ephemeral,
                sequential,
            },
            Op::Set {
                path,
                data,
                version,
            } => Action::Set {
                path,
                data,
                version,
            },
            Op::Delete { path, version } => Action::Delete { path, version },
            Op::Check { path, version } => Action::Check { path, version },
        }
    }
}

/// The result of an action. The variant names are part of the snapshot's format (sessions
/// remember the outcomes of their recent requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionResult {
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

impl From<OpResult> for ActionResult {
    fn from(result: OpResult) -> ActionResult {
        match result {
            OpResult::Created { path, stat } => ActionResult::Created { path, stat },
            OpResult::Set { stat } => ActionResult::Set { stat },
            OpResult::Deleted => ActionResult::Deleted,
            OpResult::Checked => ActionResult::Checked,
        }
    }
}

/// What applying an action produced: a result or a typed error.
pub type Outcome = Result<ActionResult, RegistryError>;
