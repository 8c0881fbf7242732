//! The registry's client API. It is an rmif service: the registry serves it with rmif-core's
//! server, and clients call it through the generated stub.

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::tree::{Op, OpResult, SessionCall, Stat};

/// Create a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// Path (for a sequential node, the prefix of its name).
    pub path: String,
    /// Data (at most 1 MiB).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Delete the node when the session ends (requires `session`).
    pub ephemeral: bool,
    /// Append a 10-digit sequence number to the name.
    pub sequential: bool,
    /// The session and request number (retries with the same pair are applied once).
    pub session: Option<SessionCall>,
}

/// Replace a node's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRequest {
    /// Path.
    pub path: String,
    /// New data.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Only if the node is at this version.
    pub version: Option<u32>,
    /// Session and request number.
    pub session: Option<SessionCall>,
}

/// Delete a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// Path.
    pub path: String,
    /// Only if the node is at this version.
    pub version: Option<u32>,
    /// Session and request number.
    pub session: Option<SessionCall>,
}

/// Several operations, atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiRequest {
    /// Create, set, delete and check operations.
    pub ops: Vec<Op>,
    /// Session and request number.
    pub session: Option<SessionCall>,
}

/// Read a node (data, children or stat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// Path.
    pub path: String,
    /// Serve from this member's applied state without confirming with a quorum (faster, may
    /// be behind the latest write).
    pub stale: bool,
    /// Never answer from a state older than this zxid (the newest the client has seen).
    pub min_zxid: u64,
}

/// A created node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// Its final path.
    pub path: String,
    /// Its stat.
    pub stat: Stat,
    /// The zxid of the creation.
    pub zxid: u64,
}

/// A completed set or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The node's new stat (none after a delete).
    pub stat: Option<Stat>,
    /// The zxid of the write.
    pub zxid: u64,
}

/// A node's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeData {
    /// The data.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The stat.
    pub stat: Stat,
    /// The state this answer reflects.
    pub zxid: u64,
}

/// A node's children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildList {
    /// Names, sorted.
    pub children: Vec<String>,
    /// The parent's stat.
    pub stat: Stat,
    /// The state this answer reflects.
    pub zxid: u64,
}

/// A node's stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStat {
    /// The stat.
    pub stat: Stat,
    /// The state this answer reflects.
    pub zxid: u64,
}

/// Results of a multi.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiResponse {
    /// One result per operation.
    pub results: Vec<OpResult>,
    /// The zxid of the multi.
    pub zxid: u64,
}

/// A completed sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// This member has applied everything committed before the sync, up to this zxid.
    pub zxid: u64,
}

/// One member's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Raft id.
    pub id: u64,
    /// Client API address.
    pub client_addr: String,
    /// Raft peer address.
    pub peer_addr: String,
    /// leader, follower, candidate or pre-candidate.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this member knows (0: none).
    pub leader: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Index of the latest snapshot.
    pub snapshot: u64,
    /// Nodes in the tree.
    pub nodes: u64,
    /// Open sessions.
    pub sessions: u64,
    /// Hash of the applied state (equal on members that applied the same entries).
    pub digest: u64,
    /// Every member: id and Raft peer address.
    pub members: Vec<(u64, String)>,
}

/// The registry's client-facing service.
#[rmif_core::service(name = "rmif.Registry")]
pub trait Registry {
    /// Creates a node.
    async fn create(&self, request: CreateRequest) -> Result<Created, RegistryError>;

    /// Replaces a node's data.
    async fn set(&self, request: SetRequest) -> Result<Written, RegistryError>;

    /// Deletes a node.
    async fn delete(&self, request: DeleteRequest) -> Result<Written, RegistryError>;

    /// Applies several operations atomically.
    async fn multi(&self, request: MultiRequest) -> Result<MultiResponse, RegistryError>;

    /// Reads a node's data.
    #[rmif(idempotent)]
    async fn get(&self, request: ReadRequest) -> Result<NodeData, RegistryError>;

    /// Lists a node's children.
    #[rmif(idempotent)]
    async fn children(&self, request: ReadRequest) -> Result<ChildList, RegistryError>;

    /// Reads a node's stat.
    #[rmif(idempotent)]
    async fn stat(&self, request: ReadRequest) -> Result<NodeStat, RegistryError>;

    /// A quorum barrier: returns once this member has applied everything committed before.
    #[rmif(idempotent)]
    async fn sync(&self) -> Result<Synced, RegistryError>;

    /// This member's role, progress and membership.
    #[rmif(idempotent, timeout_ms = 2000)]
    async fn member_status(&self) -> Result<MemberStatus, RegistryError>;
}
