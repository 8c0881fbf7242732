//! One consumer connection on the provider: reads requests, runs each handler (inline when it
//! completes on its first poll, as its own task otherwise), answers, cancels, and feeds streams
//! within the credit the consumer grants.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::call::{Handled, ProviderAnswer, ProviderCall};
use super::{ActiveCall, OpenConnection, ServerShared};
use crate::compress::decompress;
use crate::context::CallContext;
use crate::layer::boxed::BoxError;
use crate::protocol::{Frame, FrameHeader, FrameKind, INITIAL_STREAM_WINDOW, OutFrame, Status};
use crate::serialize::Serialization;
use crate::service::{BoxFuture, Dispatch, IncomingRequest, Reply};
use crate::sync::{IdMap, lock};
use crate::transport::{Link, Liveness, open_link};

/// Most stream credit a consumer may have outstanding; grants beyond it are clamped.
const MAX_STREAM_CREDIT: usize = 1 << 20;

/// A handler or stream running as its own task.
struct RunningCall {
    abort: AbortHandle,
    credit: Option<Arc<Semaphore>>,
}

struct ProviderConnection {
    link: Arc<Link>,
    shared: Arc<ServerShared>,
    running: Mutex<IdMap<RunningCall>>,
}

/// Serves one accepted connection until it closes or the server terminates.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<ServerShared>,
    _open: OpenConnection,
) {
    let liveness = Liveness {
        tick: shared.config.tick,
        again: shared.config.again,
    };
    let (link, mut reader) = match open_link(stream, liveness, shared.config.max_frame_size) {
        Ok(opened) => opened,
        Err(error) => {
            tracing::debug!(%peer, %error, "could not set up an accepted connection");
            return;
        }
    };
    let connection = Arc::new(ProviderConnection {
        link: link.clone(),
        shared: shared.clone(),
        running: Mutex::new(IdMap::default()),
    });
    let mut going_away = false;
    loop {
        if !going_away && shared.draining.is_cancelled() {
            going_away = true;
            link.send(&OutFrame::new(FrameHeader::new(FrameKind::GoAway, 0), b""));
        }
        // The reader comes first so that a busy connection pays nothing for the other branches.
        let frame = tokio::select! {
            biased;
            frame = reader.next() => frame,
            _ = link.closed() => break,
            _ = shared.terminate.cancelled() => {
                link.close("the provider shut down");
                break;
            }
            _ = shared.draining.cancelled(), if !going_away => continue,
        };
        // Frames that arrived together are handled together, and the answers of the handlers
        // that completed at once leave together at the end.
        let mut next = frame;
        let mut batch = 0;
        loop {
            match next {
                Some(Ok(frame)) => {
                    link.heard_from_peer();
                    connection.on_frame(frame);
                    batch += 1;
                }
                Some(Err(error)) => {
                    tracing::warn!(%peer, %error, "closing connection: bad input from consumer");
                    link.close(error.to_string());
                    break;
                }
                None => {
                    link.close("the consumer closed the connection");
                    break;
                }
            }
            match reader.next().now_or_never() {
                Some(frame) => next = frame,
                None => break,
            }
        }
        // A lone request is answered from here, saving the writer task's wake-up; a batch goes
        // to the writer task, so that reading the next batch and writing this one overlap.
        if batch == 1 {
            link.flush();
        } else {
            link.wake_writer();
        }
        if link.is_closed() {
            break;
        }
        // Stop reading requests while the consumer is not reading answers.
        link.ready().await;
        if shared.terminate.is_cancelled() {
            link.close("the provider shut down");
            break;
        }
    }
    connection.abort_all();
}

impl ProviderConnection {
    fn on_frame(self: &Arc<Self>, frame: Frame) {
        match frame.header.kind {
            FrameKind::Request => self.on_request(frame),
            FrameKind::Cancel => self.cancel(frame.header.request_id),
            FrameKind::StreamCredit => self.grant_credit(&frame),
            FrameKind::Heartbeat | FrameKind::HeartbeatAck => {
                self.link.handle_liveness_frame(&frame);
            }
            other => {
                let reason = format!("consumer sent a {other:?} frame, which only providers send");
                tracing::warn!(peer = %self.link.peer(), "{reason}; closing the connection");
                self.link.close(reason);
            }
        }
    }

    fn on_request(self: &Arc<Self>, frame: Frame) {
        let id = frame.header.request_id;
        let Some(head) = frame.request else {
            return;
        };
        if self.shared.draining.is_cancelled() {
            return self.refuse(id, Status::ShuttingDown, "the provider is shutting down");
        }
        let Some(service) = self.shared.services.get(&head.service_id) else {
            let served: Vec<&str> = self.shared.services.values().map(|s| &*s.key).collect();
            return self.refuse(
                id,
                Status::UnknownService,
                format!(
                    "no service with id {:#018x} here; this provider serves: {}",
                    head.service_id,
                    served.join(", ")
                ),
            );
        };
        let Some(format) = Serialization::from_id(frame.header.serialization) else {
            return self.refuse(
                id,
                Status::BadRequest,
                format!(
                    "unsupported serialization id {}; this provider supports msgpack (1) and json (2)",
                    frame.header.serialization
                ),
            );
        };
        let body = match decompress(
            frame.header.compression,
            frame.body,
            self.shared.config.max_frame_size,
        ) {
            Ok(body) => body,
            Err(error) => return self.refuse(id, Status::BadRequest, error),
        };
        let Some(active) = self.shared.begin_call() else {
            return self.refuse(
                id,
                Status::Overloaded,
                format!(
                    "{} calls in progress, the provider's limit",
                    self.shared.config.max_concurrent_requests
                ),
            );
        };
        let started = Instant::now();
        let mut context = CallContext {
            deadline: (head.timeout_ms > 0)
                .then(|| started + std::time::Duration::from_millis(u64::from(head.timeout_ms))),
            metadata: frame.metadata,
            peer: self.link.peer(),
            request_id: id,
        };
        let request = IncomingRequest { format, body };
        let provider = &service.provider;
        let dispatch = match catch_unwind(AssertUnwindSafe(|| {
            provider.dispatch(head.method_id, request)
        })) {
            Ok(dispatch) => dispatch,
            Err(panic) => return self.refuse(id, Status::Internal, panic_message(&*panic)),
        };
        if matches!(dispatch, Dispatch::UnknownMethod) {
            return self.refuse(
                id,
                Status::UnknownMethod,
                format!(
                    "service {} has no method with id {:#010x}",
                    service.key, head.method_id
                ),
            );
        }
        if let Some(layers) = &self.shared.layers {
            let method = provider
                .descriptor()
                .method_by_id(head.method_id)
                .map_or("?", |m| m.name);
            let call = ProviderCall {
                service: service.key.clone(),
                method,
                metadata: std::mem::take(&mut context.metadata),
                peer: context.peer,
                deadline: context.deadline,
                request_id: id,
                dispatch,
            };
            // Handlers read the metadata from their call context, layers from the call.
            context.metadata = call.metadata.clone();
            let running = layers.oneshot(call);
            return self.run_layered(id, format, context, Box::pin(running), active);
        }
        match dispatch {
            Dispatch::UnknownMethod => {}
            Dispatch::Immediate(reply) => self.answer(FrameKind::Response, id, format, &reply),
            Dispatch::Unary(future) => self.run_unary(id, format, context, future, active),
            Dispatch::OneWay(future) => self.run_oneway(id, context, future, active),
            Dispatch::Stream(opening) => self.run_stream(id, format, context, opening, active),
        }
    }

    /// Runs a call through the provider's layers, like [`Self::run_unary`]: polled once here,
    /// a task of its own only if that was not enough.
    fn run_layered(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        mut future: BoxFuture<Result<ProviderAnswer, BoxError>>,
        active: ActiveCall,
    ) {
        match poll_once(&context, &mut future) {
            Ok(Poll::Ready(answer)) => {
                self.finish_layered(id, format, context, answer, active, false)
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
                    let work = AssertUnwindSafe(future).catch_unwind();
                    let outcome = match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
                        None => Some(work.await),
                    };
                    connection.forget(id);
                    match outcome {
                        Some(Ok(answer)) => connection.finish_layered(
                            id,
                            format,
                            call_context,
                            answer,
                            active,
                            true,
                        ),
                        Some(Err(panic)) => {
                            drop(active);
                            let reply = Reply::message(Status::Internal, panic_message(&*panic));
                            connection.answer_now(FrameKind::Response, id, format, &reply);
                        }
                        None => {
                            drop(active);
                            let reply = Reply::message(
                                Status::DeadlineExceeded,
                                "the call's deadline passed while its handler ran; the handler was stopped",
                            );
                            connection.answer_now(FrameKind::Response, id, format, &reply);
                        }
                    }
                };
                self.spawn_call(id, context.scope(task), None);
            }
        }
    }

    /// Sends what a layered call answered; `from_task` when it finished in a task of its own
    /// (the reader's batch flush does not cover it).
    fn finish_layered(
        self: &Arc<Self>,
        id: u64,
        format: Serialization,
        context: CallContext,
        answer: Result<ProviderAnswer, BoxError>,
        active: ActiveCall,
        from_task: bool,
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
        if from_task {
            self.answer_now(FrameKind::Response, id, format, &reply);
        } else {
            self.answer(FrameKind::Response, id, format, &reply);
        }
    }

    /// Polls the handler once right here; only a handler that is not done after that first poll
    /// becomes a task of its own, since a task per call costs measurable throughput.
    fn run_unary(
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
                    let work = AssertUnwindSafe(future).catch_unwind();
                    let outcome = match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
                        None => Some(work.await),
                    };
                    connection.forget(id);
                    let reply = match outcome {
                        Some(Ok(reply)) => reply,
                        Some(Err(panic)) => {
                            Reply::message(Status::Internal, panic_message(&*panic))
                        }
                        None => Reply::message(
                            Status::DeadlineExceeded,
                            "the call's deadline passed while its handler ran; the handler was stopped",
                        ),
                    };
                    connection.answer_now(FrameKind::Response, id, format, &reply);
                };
                self.spawn_call(id, context.scope(task), None);
            }
        }
    }

    fn run_oneway(
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

    fn run_stream(
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
    fn feed_stream(
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

    fn spawn_call(
        &self,
        id: u64,
        task: impl Future<Output = ()> + Send + 'static,
        credit: Option<Arc<Semaphore>>,
    ) {
        // Holding the lock across the spawn keeps the task's own `forget` from running before
        // its entry exists.
        let mut running = lock(&self.running);
        let handle = tokio::spawn(task);
        running.insert(
            id,
            RunningCall {
                abort: handle.abort_handle(),
                credit,
            },
        );
    }

    fn forget(&self, id: u64) {
        lock(&self.running).remove(&id);
    }

    fn cancel(&self, id: u64) {
        if let Some(call) = lock(&self.running).remove(&id) {
            call.abort.abort();
        }
    }

    fn grant_credit(&self, frame: &Frame) {
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
        if let Some(call) = lock(&self.running).get(&frame.header.request_id) {
            if let Some(credit) = &call.credit {
                let room = MAX_STREAM_CREDIT.saturating_sub(credit.available_permits());
                credit.add_permits(granted.min(room));
            }
        }
    }

    fn abort_all(&self) {
        let running = std::mem::take(&mut *lock(&self.running));
        for call in running.into_values() {
            call.abort.abort();
        }
    }

    /// Queues an answer with a UTF-8 message and a non-ok status (the reader flushes).
    fn refuse(&self, id: u64, status: Status, message: impl std::fmt::Display) {
        let reply = Reply::message(status, message);
        self.link.queue(&OutFrame::new(
            FrameHeader::new(FrameKind::Response, id).with_status(status),
            &reply.body,
        ));
    }

    /// Sends a reply from a task other than the reader: written at once if the connection is
    /// idle.
    fn answer_now(&self, kind: FrameKind, id: u64, format: Serialization, reply: &Reply) {
        self.answer(kind, id, format, reply);
        self.link.flush();
    }

    /// Queues a stream item for the writer task. Items of many streams on one connection are
    /// often produced together (one registry change reaching every watcher), and the writer
    /// sends them in one write where direct writes would cost a system call and a packet each.
    fn answer_soon(&self, kind: FrameKind, id: u64, format: Serialization, reply: &Reply) {
        self.answer(kind, id, format, reply);
        self.link.wake_writer();
    }

    /// Queues a reply, compressed if the provider's policy says so (the reader flushes after
    /// the frames it received together).
    fn answer(&self, kind: FrameKind, id: u64, format: Serialization, reply: &Reply) {
        let max = self.shared.config.max_frame_size;
        if reply.body.len() > max {
            return self.refuse(
                id,
                Status::Internal,
                format!(
                    "the answer is {} bytes, above the maximum frame size of {max} bytes",
                    reply.body.len()
                ),
            );
        }
        let serialized = matches!(reply.status, Status::Ok | Status::AppError);
        let mut header = FrameHeader::new(kind, id).with_status(reply.status);
        if serialized {
            header.serialization = format.id();
        }
        let policy = &self.shared.config.compression;
        if serialized && policy.applies_to(reply.body.len()) {
            let mut packed = BytesMut::with_capacity(reply.body.len() / 2 + 16);
            header.compression = policy.compress_into(&reply.body, &mut packed) as u8;
            self.link.queue(&OutFrame::new(header, &packed));
        } else {
            self.link.queue(&OutFrame::new(header, &reply.body));
        }
    }
}

/// Polls `future` once with the call's context installed, catching a panic.
fn poll_once<T>(
    context: &CallContext,
    future: &mut Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<Poll<T>, String> {
    // A no-op waker is enough: a future still pending after this poll is spawned, and the
    // runtime polls every new task at once, registering its real waker.
    let mut cx = Context::from_waker(Waker::noop());
    context
        .clone()
        .sync_scope(|| catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))))
        .map_err(|panic| panic_message(&*panic))
}

/// What a consumer is told when a provider layer failed its call.
fn rejection_reason(error: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    match error.downcast_ref::<crate::Error>() {
        Some(crate::Error::Rejected { reason, .. }) => reason.clone(),
        _ => error.to_string(),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the handler panicked: {detail}")
}
