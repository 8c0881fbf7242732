//! The retry policy of one call: after a failed attempt, may another provider be tried?
//!
//! A call that certainly did not run (the provider was unreachable, overloaded or shutting
//! down) may always go to another provider. One that may have run (the connection broke after
//! the request left) goes again only if its method is idempotent. Either way within the
//! configured number of retries, the call's deadline and the service's retry budget, and never
//! to a provider that already failed it.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::cluster::RetryBudget;
use crate::Error;

/// The retry state of one call.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    retries: u32,
    idempotent: bool,
    failed: Vec<SocketAddr>,
}

impl RetryPolicy {
    /// Up to `retries` further attempts for a method that is `idempotent` or not.
    pub(crate) fn new(retries: u32, idempotent: bool) -> Self {
        RetryPolicy {
            retries,
            idempotent,
            failed: Vec::new(),
        }
    }

    /// Providers that already failed this call (the balancer skips them).
    pub(crate) fn failed_providers(&self) -> &[SocketAddr] {
        &self.failed
    }

    /// Records that the attempt on `provider` failed with `error`; true if another attempt may
    /// follow (taking one retry from `budget`).
    pub(crate) fn allows_another(
        &mut self,
        error: &Error,
        provider: SocketAddr,
        deadline: Instant,
        budget: &RetryBudget,
    ) -> bool {
        let safe = error.did_not_run() || (self.idempotent && error.is_retryable());
        let allowed = safe
            && self.failed.len() < self.retries as usize
            && Instant::now() < deadline
            && budget.withdraw();
        self.failed.push(provider);
        allowed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn lost() -> Error {
        Error::ConnectionLost {
            endpoint: "p".into(),
            reason: "reset".into(),
        }
    }

    fn overloaded() -> Error {
        Error::Overloaded {
            endpoint: "p".into(),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn plenty() -> RetryBudget {
        RetryBudget::new(100)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_call_that_did_not_run_goes_to_another_provider_within_the_retries() {
        let mut policy = RetryPolicy::new(2, false);
        assert!(policy.allows_another(&overloaded(), addr(1), later(), &plenty()));
        assert!(policy.allows_another(&overloaded(), addr(2), later(), &plenty()));
        assert!(!policy.allows_another(&overloaded(), addr(3), later(), &plenty()));
        assert_eq!(policy.failed_providers(), [addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn a_call_that_may_have_run_is_retried_only_if_idempotent() {
        assert!(!RetryPolicy::new(2, false).allows_another(&lost(), addr(1), later(), &plenty()));
        assert!(RetryPolicy::new(2, true).allows_another(&lost(), addr(1), later(), &plenty()));
    }

    #[test]
    fn nothing_is_retried_after_the_deadline_or_with_retries_off() {
        let past = Instant::now() - Duration::from_millis(1);
        assert!(!RetryPolicy::new(2, true).allows_another(&overloaded(), addr(1), past, &plenty()));
        assert!(!RetryPolicy::new(0, true).allows_another(
            &overloaded(),
            addr(1),
            later(),
            &plenty()
        ));
    }

    #[test]
    fn nothing_is_retried_once_the_budget_is_spent() {
        let budget = RetryBudget::new(0);
        let allowed = (0..20)
            .filter(|_| {
                RetryPolicy::new(2, true).allows_another(&overloaded(), addr(1), later(), &budget)
            })
            .count();
        // The reserve only.
        assert_eq!(allowed, 10);
    }

    #[test]
    fn errors_that_are_not_the_transports_are_final() {
        let unknown = Error::UnknownMethod {
            service: "s".into(),
            method: "m".into(),
            endpoint: "p".into(),
        };
        assert!(!RetryPolicy::new(2, true).allows_another(&unknown, addr(1), later(), &plenty()));
    }
}
