//! The handle generated stubs call through: typed arguments in, typed results out. A call is
//! encoded once, made directly or through the client's layers, and its answer decoded here; the
//! parts in between are `execute` (providers and retries) and `attempt` (one provider).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::answer::decode_answer;
use super::call::{
    Answered, CallKind, ConsumerAnswer, ConsumerCall, MethodSettings, ServiceTarget,
};
use super::request::EncodedRequest;
use super::stream::RemoteStream;
use crate::Error;
use crate::protocol::Metadata;
use crate::service::Streaming;

/// A handle for calling one service; cheap to clone. Generated `…Consumer` stubs wrap one, and
/// [`crate::Client::service`] makes one.
///
/// Methods are addressed by their index in the service's [`crate::ServiceDescriptor`].
#[derive(Clone)]
pub struct ServiceClient {
    target: Arc<ServiceTarget>,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.service())
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    pub(crate) fn new(target: ServiceTarget) -> Self {
        ServiceClient {
            target: Arc::new(target),
        }
    }

    /// The service key this client calls, as text.
    pub fn service(&self) -> &str {
        &self.target.service
    }

    /// The same client with a different deadline for one method.
    ///
    /// # Panics
    /// If the service has no method of that name (a programming error, not a runtime one).
    pub fn with_timeout(&self, method: &str, timeout: Duration) -> Self {
        let target = &self.target;
        let mut methods = target.methods.clone();
        let settings = methods
            .iter_mut()
            .find(|m| m.name == method)
            .unwrap_or_else(|| panic!("{} has no method `{method}`", target.service));
        settings.timeout = timeout;
        ServiceClient::new(ServiceTarget {
            service: target.service.clone(),
            service_id: target.service_id,
            route: target.route.clone(),
            methods,
            serialization: target.serialization,
            compression: target.compression,
            retries: target.retries,
            outlier: target.outlier,
            forks: target.forks,
            max_frame_size: target.max_frame_size,
            layers: target.layers.clone(),
        })
    }

    /// Waits until a provider of the service is connected, for at most `timeout`; the error says
    /// why none is: discovery has not answered, no provider is listed, or each listed
    /// provider's connection failure ("connection refused", a timeout).
    ///
    /// Calls made before a provider is connected wait for it within their own deadline anyway;
    /// this is for a process that should not start serving (or report itself healthy) before
    /// its dependencies are reachable.
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.target.route.ready(deadline).await
    }

    /// Calls a unary method and decodes its answer.
    pub async fn unary<A, T, E>(&self, method: usize, args: &A) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned + From<Error>,
    {
        self.unary_routed(method, args, None::<&()>).await
    }

    /// Calls a unary method like [`ServiceClient::unary`]; a consistent-hash balancer routes
    /// it by `key` (one of the arguments) instead of all the arguments, so that every call
    /// about the same key goes to the same provider. `#[rmif(hash_key = "arg")]` makes a
    /// stub call this.
    pub async fn unary_by_key<A, K, T, E>(&self, method: usize, args: &A, key: &K) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned + From<Error>,
    {
        self.unary_routed(method, args, Some(key)).await
    }

    async fn unary_routed<A, K, T, E>(
        &self,
        method: usize,
        args: &A,
        key: Option<&K>,
    ) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned + From<Error>,
    {
        let answer = self.call(CallKind::Unary, method, args, key).await?;
        match &answer.outcome {
            Answered::Unary(frame) => self.decode(method, frame, &answer),
            _ => Err(E::from(unexpected(&answer))),
        }
    }

    /// Sends a one-way call: returns once the request is queued on a connection.
    pub async fn oneway<A, E>(&self, method: usize, args: &A) -> Result<(), E>
    where
        A: Serialize + ?Sized,
        E: From<Error>,
    {
        self.oneway_routed(method, args, None::<&()>).await
    }

    /// Calls a unary method that must not fail for want of an answer (`#[rmif(failsafe)]`):
    /// when no answer comes (no provider, timeout, lost connection) it logs a warning and
    /// returns `T::default()`. An answer is decoded as [`ServiceClient::unary`] does, so the
    /// method's own errors still reach the caller. `key`, if given, routes the call as in
    /// [`ServiceClient::unary_by_key`].
    pub async fn unary_failsafe<A, K, T, E>(
        &self,
        method: usize,
        args: &A,
        key: Option<&K>,
    ) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        T: DeserializeOwned + Default,
        E: DeserializeOwned + From<Error>,
    {
        match self.call(CallKind::Unary, method, args, key).await {
            Ok(answer) => match &answer.outcome {
                Answered::Unary(frame) => self.decode(method, frame, &answer),
                _ => Err(E::from(unexpected(&answer))),
            },
            Err(error) => {
                self.failed_safe(method, &error);
                Ok(T::default())
            }
        }
    }

    /// Sends a one-way call that must not fail (`#[rmif(failsafe)]`): when it cannot be sent
    /// it logs a warning and returns `Ok(())`.
    pub async fn oneway_failsafe<A, K, E>(
        &self,
        method: usize,
        args: &A,
        key: Option<&K>,
    ) -> Result<(), E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        E: From<Error>,
    {
        if let Err(error) = self.call(CallKind::OneWay, method, args, key).await {
            self.failed_safe(method, &error);
        }
        Ok(())
    }

    fn failed_safe(&self, method: usize, error: &Error) {
        tracing::warn!(
            service = %self.target.service,
            method = self.target.methods[method].name,
            %error,
            "failsafe call got no answer; returning the default value"
        );
    }

    /// Sends a one-way call like [`ServiceClient::oneway`], routed by `key` (see
    /// [`ServiceClient::unary_by_key`]).
    pub async fn oneway_by_key<A, K, E>(&self, method: usize, args: &A, key: &K) -> Result<(), E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        E: From<Error>,
    {
        self.oneway_routed(method, args, Some(key)).await
    }

    async fn oneway_routed<A, K, E>(
        &self,
        method: usize,
        args: &A,
        key: Option<&K>,
    ) -> Result<(), E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        E: From<Error>,
    {
        let answer = self.call(CallKind::OneWay, method, args, key).await?;
        match answer.outcome {
            Answered::Sent => Ok(()),
            _ => Err(E::from(unexpected(&answer))),
        }
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
        self.server_stream_routed(method, args, None::<&()>).await
    }

    /// Opens a server stream like [`ServiceClient::server_stream`], routed by `key` (see
    /// [`ServiceClient::unary_by_key`]).
    pub async fn server_stream_by_key<A, K, T, E>(
        &self,
        method: usize,
        args: &A,
        key: &K,
    ) -> Result<Streaming<T, E>, E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + From<Error> + Send + 'static,
    {
        self.server_stream_routed(method, args, Some(key)).await
    }

    async fn server_stream_routed<A, K, T, E>(
        &self,
        method: usize,
        args: &A,
        key: Option<&K>,
    ) -> Result<Streaming<T, E>, E>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + From<Error> + Send + 'static,
    {
        let answer = self.call(CallKind::Stream, method, args, key).await?;
        let settings = &self.target.methods[method];
        match answer.outcome {
            Answered::StreamOpened(connection, id, items) => {
                Ok(Box::pin(RemoteStream::<T, E>::new(
                    connection,
                    id,
                    items,
                    self.target.service.to_string(),
                    settings.name,
                )))
            }
            Answered::StreamRefused(ref frame) => {
                match self.decode::<(), E>(method, frame, &answer) {
                    Err(error) => Err(error),
                    Ok(()) => Err(E::from(Error::Protocol(
                        "provider refused a stream with status ok".to_owned(),
                    ))),
                }
            }
            _ => Err(E::from(unexpected(&answer))),
        }
    }

    /// Encodes the arguments and makes the call, through the client's layers if it has any;
    /// `key`, if given, is what a consistent-hash balancer routes by.
    async fn call<A, K>(
        &self,
        kind: CallKind,
        method: usize,
        args: &A,
        key: Option<&K>,
    ) -> Result<ConsumerAnswer, Error>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
    {
        let target = &self.target;
        let settings: &MethodSettings = &target.methods[method];
        let deadline = target.deadline(settings);
        let request = EncodedRequest::encode(target.encoding(), args, key)?;
        let Some(layers) = &target.layers else {
            // The direct path: nothing allocated for the extension point.
            return target
                .execute(kind, method, &request, &Metadata::new(), deadline)
                .await;
        };
        let call = ConsumerCall {
            target: target.clone(),
            method,
            kind,
            request,
            metadata: Metadata::new(),
            deadline,
        };
        layers
            .oneshot(call)
            .await
            .map_err(|error| Error::from_layer(error, &target.service, settings.name))
    }

    fn decode<T, E>(
        &self,
        method: usize,
        frame: &crate::protocol::Frame,
        answer: &ConsumerAnswer,
    ) -> Result<T, E>
    where
        T: DeserializeOwned,
        E: DeserializeOwned + From<Error>,
    {
        decode_answer(
            frame,
            self.target.max_frame_size,
            &self.target.service,
            self.target.methods[method].name,
            answer.peer,
        )
    }
}

/// A layer answered a call with an answer made for another kind of call.
fn unexpected(answer: &ConsumerAnswer) -> Error {
    Error::Protocol(format!(
        "the answer from {} does not fit the kind of call made (a layer mixed up two calls?)",
        answer.peer
    ))
}
