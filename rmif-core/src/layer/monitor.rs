//! `Monitor_log`: one log line per call, on either side, with its service, method, peer,
//! latency and outcome, as a layer like any other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::boxed::BoxError;
use crate::client::call::{ConsumerAnswer, ConsumerCall};
use crate::server::call::{ProviderAnswer, ProviderCall};
use crate::service::BoxFuture;

/// Logs every call at info level, target `rmif::monitor`, once it completes: `side`, `service`,
/// `method`, `peer`, `latency_us`, and `status` (or `error` when the call failed before an
/// answer). Providers and consumers whose configuration says `Monitor_log=true` add it by
/// themselves, outermost; it can also be added with [`crate::ClientBuilder::layer`] or
/// [`crate::ServerBuilder::layer`]. Without it, nothing per call is logged and calls take the
/// direct path, with no layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorLog;

impl MonitorLog {
    /// The layer.
    pub fn new() -> Self {
        MonitorLog
    }
}

impl<S> Layer<S> for MonitorLog {
    type Service = Monitored<S>;

    fn layer(&self, inner: S) -> Monitored<S> {
        Monitored { inner }
    }
}

/// A service whose calls [`MonitorLog`] logs.
#[derive(Debug, Clone)]
pub struct Monitored<S> {
    inner: S,
}

impl<S> Service<ProviderCall> for Monitored<S>
where
    S: Service<ProviderCall, Response = ProviderAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ProviderAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ProviderAnswer, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ProviderCall) -> Self::Future {
        let (service, method, peer) = (call.service.clone(), call.method(), call.peer());
        let started = Instant::now();
        let answering = self.inner.call(call);
        Box::pin(async move {
            let answer = answering.await;
            let status = answer.as_ref().map(|a| a.status());
            log("provider", &service, method, Some(peer), started, status);
            answer
        })
    }
}

impl<S> Service<ConsumerCall> for Monitored<S>
where
    S: Service<ConsumerCall, Response = ConsumerAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ConsumerAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ConsumerAnswer, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ConsumerCall) -> Self::Future {
        let service: Arc<str> = call.target.service.clone();
        let method = call.method();
        let started = Instant::now();
        let answering = self.inner.call(call);
        Box::pin(async move {
            let answer = answering.await;
            let peer = answer.as_ref().ok().map(ConsumerAnswer::peer);
            let status = answer.as_ref().map(|a| Some(a.status()));
            log("consumer", &service, method, peer, started, status);
            answer
        })
    }
}

fn log(
    side: &str,
    service: &str,
    method: &str,
    peer: Option<SocketAddr>,
    started: Instant,
    outcome: Result<Option<crate::protocol::Status>, &BoxError>,
) {
    let latency_us = started.elapsed().as_micros() as u64;
    let peer = peer
        .map(|p| p.to_string())
        .unwrap_or_else(|| "-".to_owned());
    match outcome {
        Ok(Some(status)) => {
            tracing::info!(target: "rmif::monitor", side, service, method, peer, latency_us, status = ?status, "call")
        }
        Ok(None) => {
            tracing::info!(target: "rmif::monitor", side, service, method, peer, latency_us, status = "sent", "call")
        }
        Err(error) => {
            tracing::info!(target: "rmif::monitor", side, service, method, peer, latency_us, %error, "call")
        }
    }
}
