//! One consumer connection on the provider: reads frames, dispatches each request (its
//! handler runs as `handlers` says, a stream as `streams` says), answers, and cancels.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::call::ProviderCall;
use super::panics::panic_message;
use super::{OpenConnection, ServerShared};
use crate::compress::decompress;
use crate::context::CallContext;
use crate::protocol::{Frame, FrameHeader, FrameKind, OutFrame, Status};
use crate::serialize::Serialization;
use crate::service::{Dispatch, IncomingRequest, Reply};
use crate::sync::{IdMap, lock};
use crate::transport::{Link, Liveness, open_link};

/// A handler or stream running as its own task.
pub(super) struct RunningCall {
    pub(super) abort: AbortHandle,
    pub(super) credit: Option<Arc<Semaphore>>,
}

pub(super) struct ProviderConnection {
    pub(super) link: Arc<Link>,
    pub(super) shared: Arc<ServerShared>,
    pub(super) running: Mutex<IdMap<RunningCall>>,
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
        // A lone request, or a batch while no handler of this connection runs in a task of
        // its own, is answered from here: no other answer is coming to share the write, and
        // this saves the writer task's wake-up. Otherwise the batch goes to the writer task,
        // which sends it with the answers of the handlers finishing meanwhile (a large batch
        // is written from here at once).
        if batch == 1 || lock(&connection.running).is_empty() {
            link.flush();
        } else {
            link.send_batch();
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
        let format = match Serialization::of_request(frame.header.serialization) {
            Ok(format) => format,
            Err(reason) => return self.refuse(id, Status::BadRequest, reason),
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

    pub(super) fn spawn_call(
        &self,
        id: u64,
        task: impl Future<Output = ()> + Send + 'static,
        credit: Option<Arc<Semaphore>>,
    ) {
        // The entry exists before the task does, so the task's own `forget` always finds it,
        // and the lock is not held across the spawn: a worker woken by the spawn would block on
        // it as soon as a quick handler finished.
        let (abort, registration) = AbortHandle::new_pair();
        lock(&self.running).insert(id, RunningCall { abort, credit });
        tokio::spawn(Abortable::new(task, registration));
    }

    /// Forgets a call whose task is ending; returns how many other calls of this connection
    /// still run in tasks.
    pub(super) fn forget(&self, id: u64) -> usize {
        let mut running = lock(&self.running);
        running.remove(&id);
        running.len()
    }

    pub(super) fn cancel(&self, id: u64) {
        if let Some(call) = lock(&self.running).remove(&id) {
            call.abort.abort();
        }
    }

    pub(super) fn abort_all(&self) {
        let running = std::mem::take(&mut *lock(&self.running));
        for call in running.into_values() {
            call.abort.abort();
        }
    }

    /// Queues an answer with a UTF-8 message and a non-ok status (the reader flushes).
    pub(super) fn refuse(&self, id: u64, status: Status, message: impl std::fmt::Display) {
        let reply = Reply::message(status, message);
        self.link.queue(&OutFrame::new(
            FrameHeader::new(FrameKind::Response, id).with_status(status),
            &reply.body,
        ));
    }

    /// Sends a reply from a task other than the reader: written at once if the connection is
    /// idle.
    pub(super) fn answer_now(
        &self,
        kind: FrameKind,
        id: u64,
        format: Serialization,
        reply: &Reply,
    ) {
        self.answer(kind, id, format, reply);
        self.link.flush();
    }

    /// Sends the reply of a call whose handler ran in a task of its own. With no other call
    /// of the connection running, it is written at once from here; otherwise it goes to the
    /// writer task, which sends the answers of handlers that finish together in one system
    /// call instead of one each.
    pub(super) fn answer_from_task(
        &self,
        id: u64,
        format: Serialization,
        reply: &Reply,
        others_running: usize,
    ) {
        self.answer(FrameKind::Response, id, format, reply);
        if others_running == 0 {
            self.link.flush();
        } else {
            self.link.wake_writer();
        }
    }

    /// Queues a stream item for the writer task. Items of many streams on one connection are
    /// often produced together (one registry change reaching every watcher), and the writer
    /// sends them in one write where direct writes would cost a system call and a packet each.
    pub(super) fn answer_soon(
        &self,
        kind: FrameKind,
        id: u64,
        format: Serialization,
        reply: &Reply,
    ) {
        self.answer(kind, id, format, reply);
        self.link.wake_writer();
    }

    /// Queues a reply, compressed if the provider's policy says so (the reader flushes after
    /// the frames it received together).
    pub(super) fn answer(&self, kind: FrameKind, id: u64, format: Serialization, reply: &Reply) {
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
