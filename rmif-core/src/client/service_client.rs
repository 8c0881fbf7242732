//! Calling one service: encoding arguments, picking a provider, retrying where that is safe,
//! enforcing the deadline, and decoding the answer. Generated consumer stubs call into this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::connection::{ClientConnection, Pending};
use super::endpoint::Endpoint;
use super::route::Route;
use super::stream::RemoteStream;
use crate::Error;
use crate::balance::request_hash;
use crate::compress::{Compression, CompressionPolicy, decompress};
use crate::protocol::{
    Frame, FrameHeader, FrameKind, INITIAL_STREAM_WINDOW, OutFrame, RequestHead, Status,
};
use crate::serialize::Serialization;
use crate::service::{ServiceDescriptor, Streaming};

/// Per-method call settings, resolved once when the client is made.
#[derive(Debug, Clone)]
pub(crate) struct MethodSettings {
    pub(crate) name: &'static str,
    pub(crate) id: u32,
    pub(crate) timeout: Duration,
    pub(crate) idempotent: bool,
}

/// Everything a [`ServiceClient`] needs, shared by its clones.
pub(crate) struct ServiceShared {
    pub(crate) service: String,
    pub(crate) service_id: u64,
    pub(crate) route: Arc<Route>,
    pub(crate) methods: Vec<MethodSettings>,
    pub(crate) serialization: Serialization,
    pub(crate) compression: CompressionPolicy,
    pub(crate) retries: u32,
    pub(crate) max_frame_size: usize,
}

/// A handle for calling one service; cheap to clone. Generated `…Consumer` stubs wrap one, and
/// [`crate::Client::service`] makes one.
///
/// Methods are addressed by their index in the service's [`ServiceDescriptor`].
#[derive(Clone)]
pub struct ServiceClient {
    shared: Arc<ServiceShared>,
}

/// A request body, encoded once and reused for every attempt.
struct EncodedRequest {
    body: Bytes,
    compression: Compression,
    hash: u64,
}

/// How a stream opening attempt ended.
enum StreamOpening {
    Opened(Arc<ClientConnection>, u64, mpsc::Receiver<Frame>),
    Refused(Frame, SocketAddr),
}

impl ServiceClient {
    pub(crate) fn new(shared: ServiceShared) -> Self {
        ServiceClient {
            shared: Arc::new(shared),
        }
    }

    /// The service key this client calls, as text.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The same client with a different deadline for one method.
    ///
    /// # Panics
    /// If the service has no method of that name (a programming error, not a runtime one).
    pub fn with_timeout(&self, method: &str, timeout: Duration) -> Self {
        let mut methods = self.shared.methods.clone();
        let settings = methods
            .iter_mut()
            .find(|m| m.name == method)
            .unwrap_or_else(|| panic!("{} has no method `{method}`", self.shared.service));
        settings.timeout = timeout;
        ServiceClient::new(ServiceShared {
            service: self.shared.service.clone(),
            service_id: self.shared.service_id,
            route: self.shared.route.clone(),
            methods,
            serialization: self.shared.serialization,
            compression: self.shared.compression,
            retries: self.shared.retries,
            max_frame_size: self.shared.max_frame_size,
        })
    }

    /// Calls a unary method and decodes its answer.
    pub async fn unary<A, T, E>(&self, method: usize, args: &A) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned + From<Error>,
    {
        let settings = &self.shared.methods[method];
        let started = Instant::now();
        let deadline = started + settings.timeout;
        let request = self.encode(args)?;
        let (frame, endpoint) = self
            .with_retries(settings, &request, deadline, |endpoint| {
                self.attempt_unary(endpoint, settings, &request, deadline)
            })
            .await?;
        self.decode_answer(settings, frame, endpoint)
    }

    /// Sends a one-way call: returns once the request is queued on a connection.
    pub async fn oneway<A, E>(&self, method: usize, args: &A) -> Result<(), E>
    where
        A: Serialize + ?Sized,
        E: From<Error>,
    {
        let settings = &self.shared.methods[method];
        let deadline = Instant::now() + settings.timeout;
        let request = self.encode(args)?;
        let request = &request;
        self.with_retries(settings, request, deadline, |endpoint| async move {
            let connection = endpoint.connection(deadline).await?;
            let id = connection.next_request_id();
            let frame = self.request_frame(settings, request, id, deadline);
            if connection.send(&frame, endpoint.in_flight() == 0).await {
                Ok(())
            } else {
                Err(connection.not_sent())
            }
        })
        .await
        .map_err(E::from)
    }

    /// Opens a server stream. The method's deadline bounds the opening only; the stream then
    /// lasts until the provider ends it, the connection breaks, or the stream is dropped (which
    /// cancels it on the provider).
    pub async fn server_stream<A, T, E>(
        &self,
        method: usize,
        args: &A,
    ) -> Result<Streaming<T, E>, E>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + From<Error> + Send + 'static,
    {
        let settings = &self.shared.methods[method];
        let deadline = Instant::now() + settings.timeout;
        let request = self.encode(args)?;
        let opening = self
            .with_retries(settings, &request, deadline, |endpoint| {
                self.attempt_stream(endpoint, settings, &request, deadline)
            })
            .await?;
        match opening {
            StreamOpening::Opened(connection, id, items) => {
                Ok(Box::pin(RemoteStream::<T, E>::new(
                    connection,
                    id,
                    items,
                    self.shared.service.clone(),
                    settings.name,
                )))
            }
            StreamOpening::Refused(frame, endpoint) => {
                match self.decode_answer::<(), E>(settings, frame, endpoint) {
                    Err(error) => Err(error),
                    Ok(()) => Err(E::from(Error::Protocol(
                        "provider refused a stream with status ok".to_owned(),
                    ))),
                }
            }
        }
    }

    fn encode<A: Serialize + ?Sized>(&self, args: &A) -> Result<EncodedRequest, Error> {
        let mut plain = BytesMut::with_capacity(64);
        self.shared.serialization.encode(args, &mut plain)?;
        let hash = if self.shared.route.needs_request_hash() {
            request_hash(&plain)
        } else {
            0
        };
        let policy = &self.shared.compression;
        let (body, compression) = if policy.applies_to(plain.len()) {
            let mut packed = BytesMut::with_capacity(plain.len() / 2 + 16);
            let compression = policy.compress_into(&plain, &mut packed);
            (packed, compression)
        } else {
            (plain, Compression::None)
        };
        if body.len() > self.shared.max_frame_size {
            return Err(Error::Serialization(format!(
                "request body of {} bytes exceeds the maximum frame size of {} bytes",
                body.len(),
                self.shared.max_frame_size
            )));
        }
        Ok(EncodedRequest {
            body: body.freeze(),
            compression,
            hash,
        })
    }

    fn request_frame<'a>(
        &self,
        settings: &MethodSettings,
        request: &'a EncodedRequest,
        id: u64,
        deadline: Instant,
    ) -> OutFrame<'a> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        OutFrame {
            header: FrameHeader {
                kind: FrameKind::Request,
                serialization: self.shared.serialization.id(),
                compression: request.compression as u8,
                status: 0,
                request_id: id,
            },
            request: Some(RequestHead {
                service_id: self.shared.service_id,
                method_id: settings.id,
                timeout_ms: remaining.as_millis().clamp(1, u128::from(u32::MAX)) as u32,
            }),
            metadata: None,
            body: &request.body,
        }
    }

    /// Runs `attempt` on providers picked by the balancer until one answers, the error is not
    /// retryable for this method, the retries are used up, or the deadline passes.
    async fn with_retries<R, F, Fut>(
        &self,
        settings: &MethodSettings,
        request: &EncodedRequest,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<R, Error>
    where
        F: FnMut(Arc<Endpoint>) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let mut excluded = Vec::new();
        let mut last_error = None;
        loop {
            let endpoint = match self
                .shared
                .route
                .pick(request.hash, &excluded, deadline)
                .await
            {
                Ok(endpoint) => endpoint,
                Err(no_provider) => return Err(last_error.unwrap_or(no_provider)),
            };
            let addr = endpoint.addr();
            match attempt(endpoint).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    let retry = excluded.len() < self.shared.retries as usize
                        && (error.did_not_run() || (settings.idempotent && error.is_retryable()))
                        && Instant::now() < deadline;
                    if !retry {
                        return Err(error);
                    }
                    tracing::debug!(service = %self.shared.service, method = settings.name, %addr, %error, "retrying on another provider");
                    excluded.push(addr);
                    last_error = Some(error);
                }
            }
        }
    }

    async fn attempt_unary(
        &self,
        endpoint: Arc<Endpoint>,
        settings: &MethodSettings,
        request: &EncodedRequest,
        deadline: Instant,
    ) -> Result<(Frame, SocketAddr), Error> {
        let connection = endpoint.connection(deadline).await?;
        let _in_flight = endpoint.begin_call();
        let started = Instant::now();
        let id = connection.next_request_id();
        let (tx, rx) = oneshot::channel();
        if connection.register(id, Pending::Unary(tx)).is_err() {
            return Err(connection.not_sent());
        }
        let mut waiting = Waiting {
            connection: &connection,
            id,
            armed: true,
        };
        let frame = self.request_frame(settings, request, id, deadline);
        if !connection.send(&frame, endpoint.in_flight() <= 1).await {
            waiting.armed = false;
            connection.forget(id);
            return Err(connection.not_sent());
        }
        let answer = tokio::time::timeout_at(deadline, rx).await;
        match answer {
            Ok(Ok(frame)) => {
                waiting.armed = false;
                endpoint.observe_latency(started.elapsed());
                if frame.header.status == Status::DeadlineExceeded as u8 {
                    // The provider gave up a moment before this side would have.
                    return Err(self.timeout_error(settings));
                }
                refusal_error(&frame, endpoint.addr()).map_or(Ok((frame, endpoint.addr())), Err)
            }
            Ok(Err(_)) => {
                waiting.armed = false;
                Err(connection.lost())
            }
            Err(_) => Err(self.timeout_error(settings)),
        }
    }

    async fn attempt_stream(
        &self,
        endpoint: Arc<Endpoint>,
        settings: &MethodSettings,
        request: &EncodedRequest,
        deadline: Instant,
    ) -> Result<StreamOpening, Error> {
        let connection = endpoint.connection(deadline).await?;
        let id = connection.next_request_id();
        // Room for the full window plus the opening response and the end.
        let (tx, mut rx) = mpsc::channel(INITIAL_STREAM_WINDOW as usize + 2);
        if connection.register(id, Pending::Stream(tx)).is_err() {
            return Err(connection.not_sent());
        }
        let mut waiting = Waiting {
            connection: &connection,
            id,
            armed: true,
        };
        let frame = self.request_frame(settings, request, id, deadline);
        if !connection.send(&frame, endpoint.in_flight() <= 1).await {
            waiting.armed = false;
            connection.forget(id);
            return Err(connection.not_sent());
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(frame)) if frame.header.status == Status::Ok as u8 => {
                waiting.armed = false;
                drop(waiting);
                Ok(StreamOpening::Opened(connection, id, rx))
            }
            Ok(Some(frame)) => {
                waiting.armed = false;
                refusal_error(&frame, endpoint.addr())
                    .map_or(Ok(StreamOpening::Refused(frame, endpoint.addr())), Err)
            }
            Ok(None) => {
                waiting.armed = false;
                Err(connection.lost())
            }
            Err(_) => Err(self.timeout_error(settings)),
        }
    }

    fn timeout_error(&self, settings: &MethodSettings) -> Error {
        Error::Timeout {
            service: self.shared.service.clone(),
            method: settings.name.to_owned(),
            timeout_ms: settings.timeout.as_millis() as u64,
        }
    }

    fn decode_answer<T, E>(
        &self,
        settings: &MethodSettings,
        frame: Frame,
        endpoint: SocketAddr,
    ) -> Result<T, E>
    where
        T: DeserializeOwned,
        E: DeserializeOwned + From<Error>,
    {
        decode_answer(
            &frame,
            self.shared.max_frame_size,
            &self.shared.service,
            settings.name,
            endpoint,
        )
    }
}

/// Turns an answer frame into the method's result.
pub(crate) fn decode_answer<T, E>(
    frame: &Frame,
    max_size: usize,
    service: &str,
    method: &str,
    endpoint: SocketAddr,
) -> Result<T, E>
where
    T: DeserializeOwned,
    E: DeserializeOwned + From<Error>,
{
    let body = decompress(frame.header.compression, frame.body.clone(), max_size)
        .map_err(|e| Error::Protocol(format!("answer from {endpoint}: {e}")))?;
    let format = || {
        Serialization::from_id(frame.header.serialization).ok_or_else(|| {
            Error::Protocol(format!(
                "answer from {endpoint} uses unknown serialization id {}",
                frame.header.serialization
            ))
        })
    };
    let message = || String::from_utf8_lossy(&body).into_owned();
    let error = match Status::from_u8(frame.header.status) {
        Some(Status::Ok) => return Ok(format()?.decode::<T>(&body)?),
        Some(Status::AppError) => {
            return Err(format()?.decode::<E>(&body).unwrap_or_else(|e| E::from(e)));
        }
        Some(Status::UnknownService) => Error::UnknownService {
            service: service.to_owned(),
            endpoint: endpoint.to_string(),
        },
        Some(Status::UnknownMethod) => Error::UnknownMethod {
            service: service.to_owned(),
            method: method.to_owned(),
            endpoint: endpoint.to_string(),
        },
        Some(Status::BadRequest) => Error::BadRequest {
            service: service.to_owned(),
            method: method.to_owned(),
            reason: message(),
        },
        Some(Status::DeadlineExceeded) => Error::Timeout {
            service: service.to_owned(),
            method: method.to_owned(),
            timeout_ms: 0,
        },
        Some(Status::Internal) => Error::Remote {
            service: service.to_owned(),
            method: method.to_owned(),
            reason: message(),
        },
        Some(Status::Overloaded) => Error::Overloaded {
            endpoint: endpoint.to_string(),
        },
        Some(Status::ShuttingDown) => Error::ShuttingDown {
            endpoint: endpoint.to_string(),
        },
        None => Error::Protocol(format!(
            "answer from {endpoint} has unknown status {}",
            frame.header.status
        )),
    };
    Err(E::from(error))
}

/// The retryable error for an answer that says the call did not run.
fn refusal_error(frame: &Frame, endpoint: SocketAddr) -> Option<Error> {
    match Status::from_u8(frame.header.status) {
        Some(Status::Overloaded) => Some(Error::Overloaded {
            endpoint: endpoint.to_string(),
        }),
        Some(Status::ShuttingDown) => Some(Error::ShuttingDown {
            endpoint: endpoint.to_string(),
        }),
        _ => None,
    }
}

/// Cancels a call on its provider if the waiting future is dropped (the caller gave up or timed
/// out) before the answer arrived.
struct Waiting<'a> {
    connection: &'a ClientConnection,
    id: u64,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.connection.cancel(self.id);
        }
    }
}

/// Resolves the settings of every method of `descriptor` against the consumer's defaults.
pub(crate) fn method_settings(
    descriptor: &'static ServiceDescriptor,
    default_timeout: Duration,
) -> Vec<MethodSettings> {
    descriptor
        .methods
        .iter()
        .map(|m| MethodSettings {
            name: m.name,
            id: m.id,
            timeout: m
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(default_timeout),
            idempotent: m.idempotent,
        })
        .collect()
}
