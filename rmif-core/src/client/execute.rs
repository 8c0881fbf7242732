//! Making one call: pick a provider with the balancer, attempt the call on it, and try another
//! provider when the cluster policy and the retry policy allow, until an answer, a final error
//! or the deadline (or, forking, attempt it on several providers at once). With
//! layers, [`CallPath`] is the innermost service of the stack and does the same.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use tower_service::Service;

use super::ClusterPolicy;
use super::attempt::Attempt;
use super::call::{CallKind, ConsumerAnswer, ConsumerCall, Deadline, ServiceTarget};
use super::endpoint::Endpoint;
use super::outlier::counts_against_provider;
use super::request::EncodedRequest;
use super::retry::RetryPolicy;
use crate::Error;
use crate::layer::boxed::BoxError;
use crate::protocol::Metadata;

impl ServiceTarget {
    /// Makes a call of method `method` (an index into the target's methods).
    pub(crate) async fn execute(
        &self,
        kind: CallKind,
        method: usize,
        request: &EncodedRequest,
        metadata: &Metadata,
        deadline: Deadline,
    ) -> Result<ConsumerAnswer, Error> {
        let settings = &self.methods[method];
        let attempt = Attempt {
            target: self,
            method: settings,
            request,
            metadata,
            deadline,
        };
        self.route.retry_budget.deposit();
        let retries = match settings.cluster {
            ClusterPolicy::Forking
                if settings.idempotent && kind == CallKind::Unary && self.forks > 1 =>
            {
                return self.fork(&attempt, kind, request.hash, deadline).await;
            }
            ClusterPolicy::Failfast => 0,
            ClusterPolicy::Failover | ClusterPolicy::Forking => self.retries,
        };
        let mut retries = RetryPolicy::new(retries, settings.idempotent);
        let mut last_error = None;
        loop {
            let endpoint = match self
                .route
                .pick(request.hash, retries.failed_providers(), deadline.at)
                .await
            {
                Ok(endpoint) => endpoint,
                // Having run out of providers, the failure of the last one says more.
                Err(no_provider) => return Err(last_error.unwrap_or(no_provider)),
            };
            let provider = endpoint.addr();
            match attempt.on(kind, &endpoint).await {
                Ok(answer) => {
                    endpoint.outlier().record_success();
                    return Ok(answer);
                }
                Err(error) => {
                    self.count_failure(&endpoint, &error);
                    let budget = &self.route.retry_budget;
                    if !retries.allows_another(&error, provider, deadline.at, budget) {
                        return Err(error);
                    }
                    tracing::debug!(service = %self.service, method = settings.name, %provider, %error, "retrying on another provider");
                    last_error = Some(error);
                }
            }
        }
    }

    /// Sends the call to up to `forks` providers at once: the first answer is the call's, and
    /// dropping the other attempts cancels them on their providers. Fails only if every
    /// attempt fails, with the last failure.
    async fn fork(
        &self,
        attempt: &Attempt<'_>,
        kind: CallKind,
        request_hash: u64,
        deadline: Deadline,
    ) -> Result<ConsumerAnswer, Error> {
        let mut chosen: Vec<Arc<Endpoint>> = Vec::with_capacity(self.forks as usize);
        let mut taken: Vec<SocketAddr> = Vec::with_capacity(self.forks as usize);
        while chosen.len() < self.forks as usize {
            match self.route.pick(request_hash, &taken, deadline.at).await {
                Ok(endpoint) => {
                    taken.push(endpoint.addr());
                    chosen.push(endpoint);
                }
                Err(no_provider) if chosen.is_empty() => return Err(no_provider),
                // Fewer providers than forks: the call goes to those there are.
                Err(_) => break,
            }
        }
        let mut attempts: FuturesUnordered<_> = chosen
            .iter()
            .map(|endpoint| async move { (endpoint, attempt.on(kind, endpoint).await) })
            .collect();
        let mut last_error = None;
        while let Some((endpoint, outcome)) = attempts.next().await {
            match outcome {
                Ok(answer) => {
                    endpoint.outlier().record_success();
                    return Ok(answer);
                }
                Err(error) => {
                    self.count_failure(endpoint, &error);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("a forking call makes at least one attempt"))
    }
}

impl ServiceTarget {
    /// Counts a failed attempt against its provider if the failure says the provider is
    /// unwell, ejecting it when the outlier policy says so.
    fn count_failure(&self, endpoint: &Endpoint, error: &Error) {
        if !counts_against_provider(error) {
            return;
        }
        let ejected = endpoint
            .outlier()
            .record_failure(&self.outlier, || self.route.may_eject(&self.outlier));
        if let Some(time) = ejected {
            tracing::warn!(
                service = %self.service,
                provider = %endpoint.addr(),
                ejected_for_ms = time.as_millis() as u64,
                last_error = %error,
                "provider ejected after {} failed calls in a row",
                self.outlier.consecutive_failures
            );
        }
    }
}

/// The innermost service of a consumer's layer stack: picks providers and makes the attempts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallPath;

impl Service<ConsumerCall> for CallPath {
    type Response = ConsumerAnswer;
    type Error = BoxError;
    type Future = crate::service::BoxFuture<Result<ConsumerAnswer, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ConsumerCall) -> Self::Future {
        Box::pin(async move {
            let target = call.target.clone();
            target
                .execute(
                    call.kind,
                    call.method,
                    &call.request,
                    &call.metadata,
                    call.deadline,
                )
                .await
                .map_err(BoxError::from)
        })
    }
}
