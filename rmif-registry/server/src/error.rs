//! The member's one error type: why it could not start, or why it had to stop. A member stops
//! rather than acknowledge anything it could not make durable, so every variant here is fatal to
//! the member (clients hear typed `RegistryError`s, never these).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a member could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file or directory operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: "create", "sync", "read", …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A port could not be bound.
    #[error("cannot listen for {role} on {addr}")]
    Bind {
        /// "peers" or "clients".
        role: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes are damaged in a way no crash leaves behind (a crash only tears the tail of
    /// the log, which is cut at restart).
    #[error("{} is damaged: {detail}", path.display())]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// Where and how.
        detail: String,
    },
    /// The log names a snapshot file that cannot be read.
    #[error("the log names snapshot {index} but {} cannot be read", path.display())]
    MissingSnapshot {
        /// The snapshot's index.
        index: u64,
        /// Its file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The log skips entries.
    #[error("the log in {} skips from entry {after} to {next}", dir.display())]
    LogGap {
        /// The log's directory.
        dir: PathBuf,
        /// The last entry before the hole.
        after: u64,
        /// The first entry after it.
        next: u64,
    },
    /// A Raft structure did not encode or decode (protobuf).
    #[error("cannot {action}")]
    Protobuf {
        /// What was being done: "decode the hard state", …
        action: &'static str,
        /// What protobuf said.
        #[source]
        source: protobuf::ProtobufError,
    },
    /// One part of a log record does not fit its 32-bit length.
    #[error("a log record part of {len} bytes is larger than a record may hold (4 GiB)")]
    RecordTooLarge {
        /// Its size.
        len: usize,
    },
    /// The redb log failed.
    #[error("redb log: cannot {action}")]
    Redb {
        /// What was being done.
        action: &'static str,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// A snapshot's tree does not decode.
    #[error("corrupt snapshot of the tree")]
    Snapshot(#[source] rmp_serde::decode::Error),
    /// The data directory holds the other log engine's files.
    #[error(
        "log_engine is {asked} but {} holds a {found} log: set log_engine={found} to keep it, or \
         move it away and restart with initial_cluster_state=existing to rejoin empty",
        dir.display()
    )]
    EngineMismatch {
        /// The engine configured.
        asked: &'static str,
        /// The engine found.
        found: &'static str,
        /// The data directory.
        dir: PathBuf,
    },
    /// raft-rs refused the configuration or a state it was handed.
    #[error("raft: cannot {action}")]
    Raft {
        /// What was being done.
        action: &'static str,
        /// What raft-rs said.
        #[source]
        source: raft::Error,
    },
    /// The client API could not be served.
    #[error("cannot serve the client API")]
    Serve(#[source] rmif_core::Error),
    /// A thread of the member could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The storage thread ended without reporting an error (it panicked).
    #[error("the storage thread stopped")]
    StorageThreadStopped,
    /// The replica's task ended without an error to report.
    #[error("the replica stopped")]
    ReplicaStopped,
    /// The replica's task panicked.
    #[error("the replica task failed")]
    ReplicaPanicked(#[source] tokio::task::JoinError),
}

impl ServerError {
    /// A closure for `map_err` on a file operation.
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> ServerError + 'a {
        move |source| ServerError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// A closure for `map_err` on a redb call.
    pub(crate) fn redb<E: Into<redb::Error>>(
        action: &'static str,
    ) -> impl FnOnce(E) -> ServerError {
        move |source| ServerError::Redb {
            action,
            source: source.into(),
        }
    }

    /// A closure for `map_err` on a protobuf call.
    pub(crate) fn protobuf(
        action: &'static str,
    ) -> impl FnOnce(protobuf::ProtobufError) -> ServerError {
        move |source| ServerError::Protobuf { action, source }
    }
}
