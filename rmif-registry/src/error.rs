//! The registry's one error type: what a client can be told about a failed operation.

use serde::{Deserialize, Serialize};

/// Why a registry operation failed. Every variant about a node names its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RegistryError {
    /// `create` of a path that exists.
    #[error("{path}: node already exists")]
    NodeExists {
        /// The path.
        path: String,
    },
    /// The node (or, for `create`, its parent) does not exist.
    #[error("{path}: no such node")]
    NoNode {
        /// The missing path.
        path: String,
    },
    /// A compare-and-set saw another version.
    #[error("{path}: version conflict (expected {expected}, found {actual})")]
    BadVersion {
        /// The path.
        path: String,
        /// The version the caller expected.
        expected: u32,
        /// The node's version.
        actual: u32,
    },
    /// `delete` of a node that has children.
    #[error("{path}: node has children")]
    NotEmpty {
        /// The path.
        path: String,
    },
    /// Ephemeral nodes cannot have children.
    #[error("{path}: ephemeral nodes cannot have children")]
    EphemeralParent {
        /// The ephemeral parent's path.
        path: String,
    },
    /// The path is malformed.
    #[error("{path:?}: invalid path: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data is larger than a node may hold.
    #[error("{path}: data of {size} bytes is too large (at most {max})")]
    TooLarge {
        /// The path.
        path: String,
        /// Size given.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The operation is not allowed on this node (the root, for instance).
    #[error("{path}: {reason}")]
    NotAllowed {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The session is gone (expired or closed); its ephemeral nodes are deleted.
    #[error("session {session:#x} has expired")]
    SessionExpired {
        /// The session id.
        session: u64,
    },
    /// The session's secret did not match, or the session moved to another connection.
    #[error("session {session:#x}: {reason}")]
    SessionRejected {
        /// The session id.
        session: u64,
        /// Why.
        reason: String,
    },
    /// No quorum could be reached (no leader, or a majority of members is unreachable): the
    /// operation was not performed and may be sent again.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// A write was accepted but its outcome is unknown (the leader changed or the deadline
    /// passed before it committed): it may or may not be applied. Retrying within the same
    /// session, with the same request number, is safe.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A watcher fell too far behind the changes and was cut off; it may resume from the last
    /// zxid it processed.
    #[error("watcher fell behind and was cut off; resume after zxid {last_zxid}")]
    WatchOverrun {
        /// The last zxid delivered to the watcher.
        last_zxid: u64,
    },
    /// The request is malformed or outside a limit (too many operations in one multi, …).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client was made without any registry member to talk to.
    #[error("no registry members configured")]
    NoServers,
    /// An address that is not one of the client's members was asked about.
    #[error("{addr} is not one of this client's registry members")]
    UnknownServer {
        /// The address asked about.
        addr: String,
    },
    /// A configured address is not a usable `host:port`.
    #[error("{addr:?} is not a usable address: {reason}")]
    InvalidAddress {
        /// The address as configured.
        addr: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No local address can be announced for a provider bound to a wildcard address.
    #[error("no local address to announce: {reason}")]
    NoLocalAddress {
        /// Why (the interfaces could not be listed, or none matches the configured patterns).
        reason: String,
    },
    /// The call to the registry failed in transport.
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

impl RegistryError {
    /// True when the same request may succeed if sent again (to this or another member).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::NoQuorum(_)
            | RegistryError::Indeterminate(_)
            | RegistryError::WatchOverrun { .. } => true,
            RegistryError::Rpc(error) => {
                error.is_retryable()
                    || matches!(
                        error,
                        rmif_core::Error::Timeout { .. } | rmif_core::Error::NoProvider { .. }
                    )
            }
            _ => false,
        }
    }

    /// True when a write may or may not have been applied: the registry said so, or the
    /// connection broke or the call timed out after the request was sent.
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            RegistryError::Indeterminate(_)
                | RegistryError::Rpc(
                    rmif_core::Error::ConnectionLost { .. } | rmif_core::Error::Timeout { .. }
                )
        )
    }

    /// True when the operation certainly was not performed, so that even a write outside a
    /// session may be sent again.
    pub fn was_not_performed(&self) -> bool {
        match self {
            RegistryError::NoQuorum(_) => true,
            RegistryError::Rpc(error) => {
                error.did_not_run() || matches!(error, rmif_core::Error::NoProvider { .. })
            }
            _ => false,
        }
    }
}
