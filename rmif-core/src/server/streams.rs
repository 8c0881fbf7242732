//! Server streams on a provider connection: the opening, then items as the consumer grants
//! credit (never more than it can buffer), and the end, cut short when the provider drains.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::ActiveCall;
use super::connection::ProviderConnection;
use super::panics::panic_message;
use crate::context::CallContext;
use crate::protocol::{Frame, FrameKind, INITIAL_STREAM_WINDOW, Status};
use crate::serialize::Serialization;
use crate::service::{BoxFuture, Reply};
use crate::sync::lock;

/// Most stream credit a consumer may have outstanding; grants beyond it are clamped.
const MAX_STREAM_CREDIT: usize = 1 << 20;

impl ProviderConnection {
    pub(super) fn run_stream(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        opening: BoxFuture<Result<BoxStream<'static, Reply>, Reply>>,
        active: ActiveCall,
    ) {
        let credit = Arc::new(Semaphore::new(INITIAL_STREAM_WINDOW as usize));
        let window = credit.clone();
        let connection = self.clone();
        let task = async move {
            let _active = active;
            let items = match AssertUnwindSafe(opening).catch_unwind().await {
                Ok(Ok(stream)) => stream,
                Ok(Err(refusal)) => {
                    connection.forget(id);
                    connection.answer_now(FrameKind::Response, id, format, &refusal);
                    return;
                }
                Err(panic) => {
                    connection.forget(id);
                    connection.refuse(id, Status::Internal, panic_message(&*panic));
                    connection.link.flush();
                    return;
                }
            };
            connection.send_items(id, format, items, &window).await;
        };
        self.spawn_call(id, context.scope(task), Some(credit));
    }

    /// Feeds a stream that a layered call opened, in a task of its own.
    pub(super) fn feed_stream(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        items: BoxStream<'static, Reply>,
        active: ActiveCall,
    ) {
        let credit = Arc::new(Semaphore::new(INITIAL_STREAM_WINDOW as usize));
        let window = credit.clone();
        let connection = self.clone();
        let task = async move {
            let _active = active;
            connection.send_items(id, format, items, &window).await;
        };
        self.spawn_call(id, context.scope(task), Some(credit));
    }

    /// Says the stream opened, then sends its items as the consumer grants credit, and its end.
    async fn send_items(
        &self,
        id: u64,
        format: Serialization,
        items: BoxStream<'static, Reply>,
        window: &Semaphore,
    ) {
        let draining = self.shared.draining.clone();
        let mut items = AssertUnwindSafe(items).catch_unwind();
        self.answer_now(
            FrameKind::Response,
            id,
            format,
            &Reply {
                status: Status::Ok,
                body: BytesMut::new(),
            },
        );
        let end = loop {
            tokio::select! {
                biased;
                _ = draining.cancelled() => {
                    break Reply::message(Status::ShuttingDown, "the provider is shutting down");
                }
                permit = window.acquire() => match permit {
                    Ok(permit) => permit.forget(),
                    Err(_) => break Reply::message(Status::Internal, "stream window closed"),
                },
            }
            let next = tokio::select! {
                biased;
                _ = draining.cancelled() => {
                    break Reply::message(Status::ShuttingDown, "the provider is shutting down");
                }
                next = items.next() => next,
            };
            match next {
                Some(Ok(item)) => {
                    self.link.ready().await;
                    self.answer_soon(FrameKind::StreamItem, id, format, &item);
                }
                Some(Err(panic)) => {
                    break Reply::message(Status::Internal, panic_message(&*panic));
                }
                None => {
                    break Reply {
                        status: Status::Ok,
                        body: BytesMut::new(),
                    };
                }
            }
        };
        self.forget(id);
        self.answer_now(FrameKind::StreamEnd, id, format, &end);
    }

    pub(super) fn grant_credit(&self, frame: &Frame) {
        let Ok(bytes) = <[u8; 4]>::try_from(&frame.body[..]) else {
            let reason = format!(
                "stream credit frame has a {}-byte body; it must be 4 bytes",
                frame.body.len()
            );
            tracing::warn!(peer = %self.link.peer(), "{reason}; closing the connection");
            self.link.close(reason);
            return;
        };
        let granted = u32::from_be_bytes(bytes) as usize;
        if let Some(call) = lock(&self.running).get(&frame.header.request_id)
            && let Some(credit) = &call.credit
        {
            let room = MAX_STREAM_CREDIT.saturating_sub(credit.available_permits());
            credit.add_permits(granted.min(room));
        }
    }
}
