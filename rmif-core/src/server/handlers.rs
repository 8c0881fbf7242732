//! Running one call's handler: at once on the connection's reader when it completes on its
//! first poll (a task per call costs measurable throughput), as a task of its own otherwise,
//! stopped at the call's deadline; directly, or through the provider's layers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::ActiveCall;
use super::call::{Handled, ProviderAnswer};
use super::connection::ProviderConnection;
use super::panics::{panic_message, poll_once, rejection_reason};
use crate::context::CallContext;
use crate::layer::boxed::BoxError;
use crate::protocol::{FrameKind, Status};
use crate::serialize::Serialization;
use crate::service::{BoxFuture, Reply};

impl ProviderConnection {
    /// Runs a call through the provider's layers, like [`Self::run_unary`]: polled once here,
    /// a task of its own only if that was not enough.
    pub(super) fn run_layered(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        mut future: BoxFuture<Result<ProviderAnswer, BoxError>>,
        active: ActiveCall,
    ) {
        match poll_once(&context, &mut future) {
            Ok(Poll::Ready(answer)) => {
                self.finish_layered(id, format, context, answer, active, None)
            }
            Err(panic) => {
                drop(active);
                self.refuse(id, Status::Internal, panic);
            }
            Ok(Poll::Pending) => {
                let connection = self.clone();
                let deadline = context.deadline;
                let call_context = context.clone();
                let task = async move {
                    let outcome = run_to_end(future, deadline).await;
                    let others = connection.forget(id);
                    match outcome {
                        Ok(answer) => connection.finish_layered(
                            id,
                            format,
                            call_context,
                            answer,
                            active,
                            Some(others),
                        ),
                        Err(reply) => {
                            drop(active);
                            connection.answer_from_task(id, format, &reply, others);
                        }
                    }
                };
                self.spawn_call(id, context.scope(task), None);
            }
        }
    }

    /// Sends what a layered call answered. `from_task` holds how many other calls still run
    /// when it finished in a task of its own (the reader's batch flush does not cover it).
    fn finish_layered(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        answer: Result<ProviderAnswer, BoxError>,
        active: ActiveCall,
        from_task: Option<usize>,
    ) {
        let reply = match answer {
            Ok(ProviderAnswer {
                outcome: Handled::Stream(items),
            }) => return self.feed_stream(id, format, context, items, active),
            Ok(ProviderAnswer {
                outcome: Handled::Done,
            }) => return,
            Ok(ProviderAnswer {
                outcome: Handled::Reply(reply),
            }) => reply,
            Err(error) => Reply::message(Status::Rejected, rejection_reason(&*error)),
        };
        drop(active);
        if let Some(others) = from_task {
            self.answer_from_task(id, format, &reply, others);
        } else {
            self.answer(FrameKind::Response, id, format, &reply);
        }
    }

    /// Polls the handler once right here; only a handler that is not done after that first poll
    /// becomes a task of its own, since a task per call costs measurable throughput.
    pub(super) fn run_unary(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        mut future: BoxFuture<Reply>,
        active: ActiveCall,
    ) {
        match poll_once(&context, &mut future) {
            Ok(Poll::Ready(reply)) => {
                drop(active);
                self.answer(FrameKind::Response, id, format, &reply);
            }
            Err(panic) => {
                drop(active);
                self.refuse(id, Status::Internal, panic);
            }
            Ok(Poll::Pending) => {
                let connection = self.clone();
                let deadline = context.deadline;
                let task = async move {
                    let _active = active;
                    let reply = run_to_end(future, deadline).await.unwrap_or_else(|why| why);
                    let others = connection.forget(id);
                    connection.answer_from_task(id, format, &reply, others);
                };
                self.spawn_call(id, context.scope(task), None);
            }
        }
    }

    pub(super) fn run_oneway(
        self: &Arc<Self>,
        id: u64,
        context: CallContext,
        mut future: BoxFuture<()>,
        active: ActiveCall,
    ) {
        match poll_once(&context, &mut future) {
            Ok(Poll::Ready(())) => {}
            Err(panic) => {
                tracing::warn!(peer = %self.link.peer(), id, %panic, "one-way handler panicked")
            }
            Ok(Poll::Pending) => {
                let connection = self.clone();
                let task = async move {
                    let _active = active;
                    if let Err(panic) = AssertUnwindSafe(future).catch_unwind().await {
                        tracing::warn!(id, panic = %panic_message(&*panic), "one-way handler panicked");
                    }
                    connection.forget(id);
                };
                self.spawn_call(id, context.scope(task), None);
            }
        }
    }
}

/// Runs a handler's future (in its own task) to its end or to the call's deadline, catching a
/// panic: its output, or the reply that says why there is none.
async fn run_to_end<T>(future: BoxFuture<T>, deadline: Option<Instant>) -> Result<T, Reply> {
    let work = AssertUnwindSafe(future).catch_unwind();
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    };
    match outcome {
        Some(Ok(output)) => Ok(output),
        Some(Err(panic)) => Err(Reply::message(Status::Internal, panic_message(&*panic))),
        None => Err(Reply::message(
            Status::DeadlineExceeded,
            "the call's deadline passed while its handler ran; the handler was stopped",
        )),
    }
}
