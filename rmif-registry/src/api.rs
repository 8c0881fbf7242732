//! The registry's client API. It is an rmif service: the registry serves it with rmif-core's
//! server, and clients call it through the generated stub.

use serde::{Deserialize, Serialize};

use rmif_core::Streaming;

use crate::error::RegistryError;
use crate::node::{ChangeKind, Stat};
use crate::op::{Op, OpResult, SessionCall};

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

/// Open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSessionRequest {
    /// Requested timeout; the member clamps it to its configured bounds.
    pub timeout_ms: u64,
}

/// Move a session to the calling connection (after a failover or a reconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachSessionRequest {
    /// The session.
    pub session: u64,
    /// Its secret, from [`SessionGrant`].
    pub secret: u64,
}

/// A session held by the calling connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    /// Its id.
    pub session: u64,
    /// What resuming it on another connection requires; keep it private.
    pub secret: u64,
    /// The granted timeout.
    pub timeout_ms: u64,
    /// The zxid of the grant.
    pub zxid: u64,
}

/// A heartbeat, or a session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// The session.
    pub session: u64,
    /// For `close_session`: the request number (retries are applied once).
    pub request_id: u64,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAliveAck {
    /// The member's applied zxid.
    pub zxid: u64,
}

/// What a watch follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WatchMode {
    /// One-shot: the next change of the node's data (or its creation or deletion).
    Data,
    /// One-shot: the next change of the node's children (or its deletion).
    Children,
    /// Every change of the node and its children list, until cancelled.
    Persistent,
    /// Every change anywhere under the node (the node included), until cancelled.
    Recursive,
}

impl WatchMode {
    /// One-shot modes end after their first change.
    pub fn is_one_shot(self) -> bool {
        matches!(self, WatchMode::Data | WatchMode::Children)
    }
}

/// Start watching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// The node.
    pub path: String,
    /// What to follow.
    pub mode: WatchMode,
    /// Deliver changes after this zxid (to resume without a gap); `None`: from now.
    pub since_zxid: Option<u64>,
    /// Never arm from a state older than this zxid (the newest the client has seen), so that a
    /// new watch does not report, as news, changes its client already saw.
    #[serde(default)]
    pub min_zxid: u64,
    /// Events of created and changed nodes carry the node's data, so that following a list
    /// costs no read per change. (Left out of the encoding when false: a member that predates
    /// it sees the request it always saw.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub with_data: bool,
    /// Without `since_zxid`: the first message is the watched nodes' state (a resync at the
    /// zxid the watch starts from) instead of a bare armed message.
    #[serde(default, skip_serializing_if = "is_false")]
    pub with_state: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One change in a watch message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// What happened.
    pub kind: ChangeKind,
    /// To which node.
    pub path: String,
    /// The node's data after a creation or a data change, when the watch asked for it
    /// ([`WatchRequest::with_data`]).
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<u8>>,
}

/// A node's full state, in a resync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Its path.
    pub path: String,
    /// Its stat.
    pub stat: Stat,
    /// Its data.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One message of a watch stream. The first message of every stream has no events and no
/// resync: it says the watch is armed, at `zxid` (or, for a watch that asked for it
/// ([`WatchRequest::with_state`]), it is the resync of the watched nodes at `zxid`). After it,
/// every message carries the matching changes of one zxid, in zxid order and without gaps, or a
/// resync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchMessage {
    /// The zxid of the changes (or of the resynchronized state).
    pub zxid: u64,
    /// The matching changes made by entry `zxid`.
    pub events: Vec<WatchEvent>,
    /// Present when the changes since the requested zxid are no longer known: the current
    /// state of the watched nodes, which replaces whatever the watcher knew.
    pub resync: Option<Vec<NodeSnapshot>>,
}

impl WatchMessage {
    /// True for the first message of a stream (the watch is armed).
    pub fn is_armed(&self) -> bool {
        self.events.is_empty() && self.resync.is_none()
    }
}

/// Answers that say which state they reflect, so that clients can keep track of the newest.
pub trait Reflects {
    /// The zxid of the state the answer reflects (or of the write it reports).
    fn zxid(&self) -> u64;
}

macro_rules! reflects {
    ($($answer:ty),*) => {
        $(impl Reflects for $answer {
            fn zxid(&self) -> u64 {
                self.zxid
            }
        })*
    };
}

reflects!(
    Created,
    Written,
    NodeData,
    ChildList,
    NodeStat,
    MultiResponse,
    Synced,
    SessionGrant,
    KeepAliveAck
);

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

    /// Opens a session held by the calling connection.
    async fn open_session(
        &self,
        request: OpenSessionRequest,
    ) -> Result<SessionGrant, RegistryError>;

    /// Moves a session to the calling connection.
    async fn attach_session(
        &self,
        request: AttachSessionRequest,
    ) -> Result<SessionGrant, RegistryError>;

    /// A heartbeat. Fails if the session is gone, held by another connection, or this member
    /// has lost its leader (the client should then try another member).
    #[rmif(idempotent, timeout_ms = 2000)]
    async fn keep_alive(&self, request: SessionRequest) -> Result<KeepAliveAck, RegistryError>;

    /// Ends a session and deletes its ephemeral nodes.
    async fn close_session(&self, request: SessionRequest) -> Result<Written, RegistryError>;

    /// Follows changes of a node (see [`WatchMessage`] for what the stream carries).
    async fn watch(
        &self,
        request: WatchRequest,
    ) -> Result<Streaming<WatchMessage, RegistryError>, RegistryError>;
}
