//! A call as provider layers see it ([`ProviderCall`]) and what the provider answers
//! ([`ProviderAnswer`]), and the innermost service of every provider layer stack, which runs the
//! handler.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use tokio::time::Instant;
use tower_service::Service;

use crate::layer::boxed::BoxError;
use crate::protocol::{Metadata, Status};
use crate::service::{BoxFuture, Dispatch, Reply};

/// One call arriving at a provider, as its layers see it: the service and method, the
/// consumer's metadata, who called, and the deadline. The handler has not run yet; the next
/// service in the stack runs it.
///
/// Layers are tower `Layer`s whose services take a `ProviderCall` and answer a
/// [`ProviderAnswer`]; see [`crate::layer`].
pub struct ProviderCall {
    pub(crate) service: Arc<str>,
    pub(crate) method: &'static str,
    pub(crate) metadata: Metadata,
    pub(crate) peer: SocketAddr,
    pub(crate) deadline: Option<Instant>,
    pub(crate) request_id: u64,
    pub(crate) dispatch: Dispatch,
}

impl ProviderCall {
    /// The service key (`group/name:version`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The method's name (`"?"` when the service has no method with the requested id).
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Metadata the consumer sent.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The consumer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// When the consumer stops waiting (`None`: it did not say).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The request's id on its connection.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }
}

impl fmt::Debug for ProviderCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderCall")
            .field("service", &self.service)
            .field("method", &self.method)
            .field("peer", &self.peer)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// What a provider sends back for a [`ProviderCall`].
pub struct ProviderAnswer {
    pub(crate) outcome: Handled,
}

/// The answer's content, by kind of call.
pub(crate) enum Handled {
    /// The reply of a unary call, or the refusal of a stream or of the call itself.
    Reply(Reply),
    /// A one-way call ran; nothing goes back.
    Done,
    /// A stream opened; its items go out as the consumer grants credit.
    Stream(BoxStream<'static, Reply>),
}

impl ProviderAnswer {
    /// Refuses the call without running it: the consumer's call fails with
    /// [`Error::Rejected`](crate::Error::Rejected) carrying `reason`.
    pub fn rejected(reason: impl fmt::Display) -> Self {
        ProviderAnswer {
            outcome: Handled::Reply(Reply::message(Status::Rejected, reason)),
        }
    }

    /// The status sent back: `Ok` for a value or an opened stream, `AppError` for the method's
    /// own error, and so on; `None` for a one-way call, which gets no answer.
    pub fn status(&self) -> Option<Status> {
        match &self.outcome {
            Handled::Reply(reply) => Some(reply.status),
            Handled::Stream(_) => Some(Status::Ok),
            Handled::Done => None,
        }
    }
}

impl fmt::Debug for ProviderAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderAnswer")
            .field("status", &self.status())
            .finish()
    }
}

/// The innermost service of a provider's layer stack: runs the handler the call was dispatched
/// to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunHandler;

impl Service<ProviderCall> for RunHandler {
    type Response = ProviderAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ProviderAnswer, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ProviderCall) -> Self::Future {
        let service = call.service;
        Box::pin(async move {
            let outcome = match call.dispatch {
                Dispatch::Unary(running) => Handled::Reply(running.await),
                Dispatch::OneWay(running) => {
                    running.await;
                    Handled::Done
                }
                Dispatch::Stream(opening) => match opening.await {
                    Ok(items) => Handled::Stream(items),
                    Err(refusal) => Handled::Reply(refusal),
                },
                Dispatch::Immediate(reply) => Handled::Reply(reply),
                Dispatch::UnknownMethod => Handled::Reply(Reply::message(
                    Status::UnknownMethod,
                    format!("service {service} has no such method"),
                )),
            };
            Ok(ProviderAnswer { outcome })
        })
    }
}
