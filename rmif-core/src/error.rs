//! The one error type that callers of rmif see, and its retry classification.

use serde::{Deserialize, Serialize};

/// Result alias used throughout rmif-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a remote call, other than the application's own error.
///
/// Service methods return `Result<T, E>` where `E: From<Error>`, so every transport failure reaches
/// the caller through the service trait itself. `Error` is serializable so an application error
/// type can embed it (`#[error(transparent)] Rpc(#[from] rmif_core::Error)`).
///
/// Messages name the service, method or endpoint involved so that a log line is enough to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The call did not complete within its deadline; a late response is dropped.
    #[error("call {service}.{method} timed out after {timeout_ms} ms")]
    Timeout {
        /// Service name.
        service: String,
        /// Method name.
        method: String,
        /// The deadline the call had.
        timeout_ms: u64,
    },
    /// The connection carrying the call broke after the request was sent; the call may or may not
    /// have run on the provider.
    #[error(
        "connection to {endpoint} lost: {reason} (the call may have run; only idempotent methods are retried)"
    )]
    ConnectionLost {
        /// Provider address.
        endpoint: String,
        /// Why the connection ended.
        reason: String,
    },
    /// No connection to the provider could be established; the call was not sent.
    #[error("provider {endpoint} is unavailable: {reason}")]
    Unavailable {
        /// Provider address.
        endpoint: String,
        /// The last connection error.
        reason: String,
    },
    /// Discovery knows no reachable provider of the service.
    #[error("no provider of {service} is available{detail}")]
    NoProvider {
        /// Service key.
        service: String,
        /// Extra context, starting with a separator, or empty.
        detail: String,
    },
    /// The provider refused the call because it is at its concurrency limit; the call did not run.
    #[error("provider {endpoint} is overloaded; the call did not run")]
    Overloaded {
        /// Provider address.
        endpoint: String,
    },
    /// The provider is shutting down and refused the call; the call did not run.
    #[error("provider {endpoint} is shutting down; the call did not run")]
    ShuttingDown {
        /// Provider address.
        endpoint: String,
    },
    /// The provider does not serve this service (wrong name, group or version).
    #[error("provider {endpoint} does not serve {service}")]
    UnknownService {
        /// Service key.
        service: String,
        /// Provider address.
        endpoint: String,
    },
    /// The provider serves the service but not this method (an older or newer build).
    #[error("provider {endpoint} serves {service} but has no method {method}")]
    UnknownMethod {
        /// Service key.
        service: String,
        /// Method name.
        method: String,
        /// Provider address.
        endpoint: String,
    },
    /// The provider could not decode the request (argument types differ between the two builds,
    /// unsupported serialization, a bad compressed body).
    #[error("provider rejected the request for {service}.{method}: {reason}")]
    BadRequest {
        /// Service key.
        service: String,
        /// Method name.
        method: String,
        /// What the provider said.
        reason: String,
    },
    /// The provider's handler failed without an application error (it panicked).
    #[error("provider failed while running {service}.{method}: {reason}")]
    Remote {
        /// Service key.
        service: String,
        /// Method name.
        method: String,
        /// What the provider said.
        reason: String,
    },
    /// A layer refused the call (access control, a rate limit) or failed it, on either side; the
    /// reason says which and why.
    #[error("call {service}.{method} refused: {reason}")]
    Rejected {
        /// Service key.
        service: String,
        /// Method name.
        method: String,
        /// What the layer said.
        reason: String,
    },
    /// A value could not be serialized or a response could not be deserialized.
    #[error("serialization error: {0}")]
    Serialization(String),
    /// The call was cancelled before it completed.
    #[error("call cancelled: {0}")]
    Cancelled(String),
    /// The peer broke the wire protocol; the connection was closed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A local I/O operation failed (binding a port, reading a file).
    #[error("I/O error: {0}")]
    Io(String),
}

impl Error {
    /// True when the call certainly did not run on the provider, so it may be sent to another
    /// provider even if the method is not idempotent.
    pub fn did_not_run(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Overloaded { .. } | Error::ShuttingDown { .. }
        )
    }

    /// True when another attempt (possibly on another provider) may succeed. For a method that
    /// is not idempotent, only errors for which [`Error::did_not_run`] holds are retried.
    pub fn is_retryable(&self) -> bool {
        self.did_not_run() || matches!(self, Error::ConnectionLost { .. })
    }
}

impl Error {
    /// The error a consumer's call ends with when its layers failed it: the [`Error`] itself if
    /// that is what a layer (or rmif under it) returned, else [`Error::Rejected`] with the
    /// layer's message.
    pub(crate) fn from_layer(error: crate::layer::BoxError, service: &str, method: &str) -> Error {
        match error.downcast::<Error>() {
            Ok(error) => *error,
            Err(other) => Error::Rejected {
                service: service.to_owned(),
                method: method.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(error.to_string())
    }
}
