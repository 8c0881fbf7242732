//! What a provider's handler can learn about the call it is serving: deadline, metadata, peer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::Metadata;

tokio::task_local! {
    static CURRENT: CallContext;
}

/// The call a handler is serving. Available inside provider handlers through
/// [`CallContext::current`]; `None` elsewhere (for example when the trait is called locally).
///
/// ```no_run
/// # async fn handler() {
/// if let Some(call) = rmif_core::CallContext::current() {
///     if call.remaining() < Some(std::time::Duration::from_millis(5)) {
///         // not worth starting an expensive query
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CallContext {
    pub(crate) deadline: Option<Instant>,
    pub(crate) metadata: Metadata,
    pub(crate) peer: SocketAddr,
    pub(crate) request_id: u64,
}

impl CallContext {
    /// The context of the call being served by the current task, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The deadline of the call the current task is serving, if any, without copying the
    /// context: what bounds the calls a handler makes.
    pub(crate) fn current_deadline() -> Option<Instant> {
        CURRENT.try_with(|call| call.deadline).ok().flatten()
    }

    /// When the consumer stops waiting for the answer (`None`: it did not say).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once it passed; `None` if there is no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Metadata the consumer attached to the request.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The consumer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The request id on its connection (useful in logs).
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Runs `f` with this context installed (for a synchronous poll).
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// Wraps `future` so that it runs with this context installed.
    pub(crate) fn scope<F: std::future::Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<CallContext, F> {
        CURRENT.scope(self, future)
    }
}
