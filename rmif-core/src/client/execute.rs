//! Making one call: pick a provider with the balancer, attempt the call on it, and try another
//! provider when the retry policy allows, until an answer, a final error or the deadline. With
//! layers, [`CallPath`] is the innermost service of the stack and does the same.

use std::task::{Context, Poll};

use tower_service::Service;

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
        let mut retries = RetryPolicy::new(self.retries, settings.idempotent);
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
                    if !retries.allows_another(&error, provider, deadline.at) {
                        return Err(error);
                    }
                    tracing::debug!(service = %self.service, method = settings.name, %provider, %error, "retrying on another provider");
                    last_error = Some(error);
                }
            }
        }
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
