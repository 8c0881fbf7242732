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

/// What a failed operation's error says, for a caller that acts on it without reading the
/// message: a script's exit code (the `rmif` command's), a retry policy, a metric label.
///
/// [`RegistryError::kind`] gives it; [`ErrorKind::outcome`] says whether the operation may have
/// happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The node (or, for `create`, its parent) does not exist.
    NoNode,
    /// `create` of a node that exists.
    NodeExists,
    /// A compare-and-set saw another version.
    BadVersion,
    /// `delete` of a node that has children.
    NotEmpty,
    /// The request itself is wrong and will fail again as it is: a malformed path, data too
    /// large, an operation not allowed on the node, a child of an ephemeral node, a malformed
    /// request, a client without usable member addresses.
    Invalid,
    /// The session is gone (expired or closed) or was refused to this client.
    Session,
    /// The cluster could not take the request now (no leader, no majority reachable, a member
    /// shutting down or overloaded): it was not performed, and may succeed later.
    NoQuorum,
    /// No member could be contacted (connection refused, no route): the request was not sent.
    Unreachable,
    /// The request may or may not have been performed: the registry said so, the connection
    /// broke after it was sent, or the deadline passed.
    OutcomeUnknown,
    /// Anything else (a watcher cut off, a protocol or serialization failure, …).
    Other,
}

/// Whether a failed operation may have happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It certainly was not performed.
    NotApplied,
    /// It may or may not have been performed.
    Unknown,
}

impl Outcome {
    /// `"not_applied"` or `"unknown"`: the name the `rmif` command's JSON errors use.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotApplied => "not_applied",
            Outcome::Unknown => "unknown",
        }
    }
}

impl ErrorKind {
    /// A stable snake_case name (`"no_node"`, `"outcome_unknown"`, …), as the `rmif` command's
    /// JSON errors give it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoNode => "no_node",
            ErrorKind::NodeExists => "node_exists",
            ErrorKind::BadVersion => "bad_version",
            ErrorKind::NotEmpty => "not_empty",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Session => "session",
            ErrorKind::NoQuorum => "no_quorum",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::Other => "other",
        }
    }

    /// Whether an operation that failed so may have happened: every kind but
    /// [`ErrorKind::OutcomeUnknown`] and [`ErrorKind::Other`] (which may be a response lost
    /// after the operation ran) says it did not.
    pub fn outcome(self) -> Outcome {
        match self {
            ErrorKind::OutcomeUnknown | ErrorKind::Other => Outcome::Unknown,
            _ => Outcome::NotApplied,
        }
    }
}

impl RegistryError {
    /// What kind of failure this is; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        use rmif_core::Error as Rpc;
        match self {
            RegistryError::NoNode { .. } => ErrorKind::NoNode,
            RegistryError::NodeExists { .. } => ErrorKind::NodeExists,
            RegistryError::BadVersion { .. } => ErrorKind::BadVersion,
            RegistryError::NotEmpty { .. } => ErrorKind::NotEmpty,
            RegistryError::EphemeralParent { .. }
            | RegistryError::InvalidPath { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::NotAllowed { .. }
            | RegistryError::BadRequest(_)
            | RegistryError::NoServers
            | RegistryError::UnknownServer { .. }
            | RegistryError::InvalidAddress { .. }
            | RegistryError::NoLocalAddress { .. } => ErrorKind::Invalid,
            RegistryError::SessionExpired { .. } | RegistryError::SessionRejected { .. } => {
                ErrorKind::Session
            }
            RegistryError::NoQuorum(_) => ErrorKind::NoQuorum,
            RegistryError::Indeterminate(_) => ErrorKind::OutcomeUnknown,
            RegistryError::WatchOverrun { .. } => ErrorKind::Other,
            RegistryError::Rpc(error) => match error {
                Rpc::Unavailable { .. } | Rpc::NoProvider { .. } => ErrorKind::Unreachable,
                Rpc::Overloaded { .. } | Rpc::ShuttingDown { .. } => ErrorKind::NoQuorum,
                Rpc::ConnectionLost { .. } | Rpc::Timeout { .. } => ErrorKind::OutcomeUnknown,
                Rpc::Config(_) => ErrorKind::Invalid,
                _ => ErrorKind::Other,
            },
        }
    }

    /// Whether the failed operation may have happened: [`ErrorKind::outcome`] of
    /// [`RegistryError::kind`].
    pub fn outcome(&self) -> Outcome {
        self.kind().outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(error: rmif_core::Error) -> RegistryError {
        RegistryError::Rpc(error)
    }

    #[test]
    fn the_registrys_refusals_did_not_happen_and_name_their_reason() {
        let path = || "/a".to_owned();
        let cases = [
            (RegistryError::NoNode { path: path() }, ErrorKind::NoNode),
            (
                RegistryError::NodeExists { path: path() },
                ErrorKind::NodeExists,
            ),
            (
                RegistryError::BadVersion {
                    path: path(),
                    expected: 1,
                    actual: 2,
                },
                ErrorKind::BadVersion,
            ),
            (
                RegistryError::NotEmpty { path: path() },
                ErrorKind::NotEmpty,
            ),
            (
                RegistryError::InvalidPath {
                    path: "a".into(),
                    reason: "relative".into(),
                },
                ErrorKind::Invalid,
            ),
            (
                RegistryError::TooLarge {
                    path: path(),
                    size: 2,
                    max: 1,
                },
                ErrorKind::Invalid,
            ),
            (
                RegistryError::SessionExpired { session: 1 },
                ErrorKind::Session,
            ),
            (
                RegistryError::NoQuorum("no leader".into()),
                ErrorKind::NoQuorum,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.outcome(), Outcome::NotApplied, "{error}");
        }
    }

    #[test]
    fn a_failure_after_the_request_left_may_have_happened() {
        let cases = [
            RegistryError::Indeterminate("the leader changed".into()),
            rpc(rmif_core::Error::ConnectionLost {
                endpoint: "m".into(),
                reason: "reset".into(),
            }),
            rpc(rmif_core::Error::Timeout {
                service: "s".into(),
                method: "m".into(),
                timeout_ms: 1,
            }),
        ];
        for error in cases {
            assert_eq!(error.kind(), ErrorKind::OutcomeUnknown, "{error}");
            assert_eq!(error.outcome(), Outcome::Unknown, "{error}");
            // The older predicate agrees.
            assert!(error.is_indeterminate(), "{error}");
        }
        let garbled = rpc(rmif_core::Error::Serialization("bad response".into()));
        assert_eq!(garbled.kind(), ErrorKind::Other);
        assert_eq!(garbled.outcome(), Outcome::Unknown);
    }

    #[test]
    fn no_member_contacted_is_unreachable_and_a_busy_member_is_no_quorum() {
        for error in [
            rpc(rmif_core::Error::Unavailable {
                endpoint: "127.0.0.1:1".into(),
                reason: "connection refused".into(),
            }),
            rpc(rmif_core::Error::NoProvider {
                service: "rmif.Registry".into(),
                detail: String::new(),
            }),
        ] {
            assert_eq!(error.kind(), ErrorKind::Unreachable, "{error}");
            assert_eq!(error.outcome(), Outcome::NotApplied);
            assert!(error.was_not_performed(), "{error}");
        }
        let stopping = rpc(rmif_core::Error::ShuttingDown {
            endpoint: "m".into(),
        });
        assert_eq!(stopping.kind(), ErrorKind::NoQuorum);
        assert!(stopping.was_not_performed());
    }

    #[test]
    fn kind_names_are_distinct_snake_case() {
        let kinds = [
            ErrorKind::NoNode,
            ErrorKind::NodeExists,
            ErrorKind::BadVersion,
            ErrorKind::NotEmpty,
            ErrorKind::Invalid,
            ErrorKind::Session,
            ErrorKind::NoQuorum,
            ErrorKind::Unreachable,
            ErrorKind::OutcomeUnknown,
            ErrorKind::Other,
        ];
        let names: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), kinds.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        assert_eq!(Outcome::NotApplied.as_str(), "not_applied");
        assert_eq!(Outcome::Unknown.as_str(), "unknown");
    }
}
