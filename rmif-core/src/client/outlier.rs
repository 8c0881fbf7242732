//! Outlier ejection: a provider that fails calls several times in a row (timeouts, "overloaded",
//! lost or refused connections) is left out of balancing for a while, longer each time it is
//! ejected again, but never so many at once that the rest would be flooded.
//!
//! The counts live on each provider's endpoint (lock-free; a successful call costs one load);
//! the share of a service's providers that may be out at once is checked by its route.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::sync::lock;

/// When a consumer ejects a provider (`Outlier_*` keys in configuration).
///
/// ```
/// use std::time::Duration;
/// use rmif_core::OutlierPolicy;
///
/// // Out after 3 failures in a row, for 5 s, then 10 s, 15 s… up to a minute; at most a
/// // third of a service's providers at once.
/// let policy = OutlierPolicy {
///     consecutive_failures: 3,
///     base_ejection: Duration::from_secs(5),
///     max_ejection: Duration::from_secs(60),
///     max_ejected_percent: 33,
/// };
/// assert!(policy.is_enabled());
/// assert!(!OutlierPolicy::disabled().is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failed calls in a row that eject a provider (`Outlier_consecutive_failures`, default 5;
    /// 0 turns ejection off).
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; the n-th in a row lasts n times as long
    /// (`Outlier_ejection_ms`, default 10000).
    pub base_ejection: Duration,
    /// The longest an ejection lasts (`Outlier_max_ejection_ms`, default 300000).
    pub max_ejection: Duration,
    /// The largest share of one service's providers ejected at once, in per cent
    /// (`Outlier_max_ejected_percent`, default 50): with 2 providers one may be out, with 1 none.
    pub max_ejected_percent: u32,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        OutlierPolicy {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

impl OutlierPolicy {
    /// No ejection.
    pub fn disabled() -> Self {
        OutlierPolicy {
            consecutive_failures: 0,
            ..OutlierPolicy::default()
        }
    }

    /// Whether providers are ever ejected.
    pub fn is_enabled(&self) -> bool {
        self.consecutive_failures > 0 && self.max_ejected_percent > 0
    }

    /// How many of `providers` may be ejected at once.
    pub(crate) fn max_ejected(&self, providers: usize) -> usize {
        providers * self.max_ejected_percent.min(100) as usize / 100
    }

    /// How long the ejection that follows `previous` recent ones lasts.
    fn ejection_time(&self, previous: u32) -> Duration {
        self.base_ejection
            .saturating_mul(previous.saturating_add(1))
            .min(self.max_ejection)
    }
}

/// Whether a failed call counts against its provider: the provider did not serve it in time or
/// at all. Application errors and refusals that say nothing of its health do not.
pub(crate) fn counts_against_provider(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable { .. }
            | Error::Overloaded { .. }
            | Error::ConnectionLost { .. }
            | Error::Timeout { .. }
    )
}

/// One provider's record: failures in a row and its ejection.
#[derive(Debug, Default)]
pub(crate) struct OutlierState {
    failures_in_a_row: AtomicU32,
    /// When the current ejection ends ([`since_start`] nanoseconds; 0: not ejected).
    ejected_until: AtomicU64,
    history: Mutex<History>,
}

/// Recent ejections, for how long the next one lasts.
#[derive(Debug, Default)]
struct History {
    recent: u32,
    last_ended: Option<Instant>,
}

impl OutlierState {
    /// True while the provider is ejected. Costs one atomic load when it is not.
    pub(crate) fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && since_start(Instant::now()) < until
    }

    /// A call succeeded: the failures in a row start again from zero.
    pub(crate) fn record_success(&self) {
        if self.failures_in_a_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// A call failed in a way that counts against the provider. Returns how long the provider
    /// is now ejected for, if this failure ejected it; `may_eject` says whether the service
    /// can spare another provider (asked only when the threshold is reached).
    pub(crate) fn record_failure(
        &self,
        policy: &OutlierPolicy,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        if !policy.is_enabled() {
            return None;
        }
        let failures = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < policy.consecutive_failures || self.is_ejected() || !may_eject() {
            return None;
        }
        let now = Instant::now();
        let mut history = lock(&self.history);
        // Each base period without an ejection forgives one of the recent ones.
        if let Some(ended) = history.last_ended {
            let quiet = now.saturating_duration_since(ended);
            let forgiven = quiet.as_nanos() / policy.base_ejection.as_nanos().max(1);
            history.recent = history
                .recent
                .saturating_sub(forgiven.min(u128::from(u32::MAX)) as u32);
        }
        let time = policy.ejection_time(history.recent);
        history.recent += 1;
        history.last_ended = Some(now + time);
        self.failures_in_a_row.store(0, Ordering::Relaxed);
        self.ejected_until
            .store(since_start(now + time).max(1), Ordering::Release);
        Some(time)
    }
}

/// Nanoseconds from the first use of this module to `at` (for storing instants in atomics).
fn since_start(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    at.saturating_duration_since(start).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> Error {
        Error::Timeout {
            service: "s".into(),
            method: "m".into(),
            timeout_ms: 10,
        }
    }

    fn policy(base_ms: u64) -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(base_ms),
            max_ejection: Duration::from_millis(base_ms * 3),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn the_threshold_counts_failures_in_a_row_only() {
        let state = OutlierState::default();
        let policy = policy(60_000);
        assert_eq!(state.record_failure(&policy, || true), None);
        assert_eq!(state.record_failure(&policy, || true), None);
        state.record_success();
        assert_eq!(state.record_failure(&policy, || true), None);
        assert_eq!(state.record_failure(&policy, || true), None);
        assert!(!state.is_ejected());
        assert_eq!(
            state.record_failure(&policy, || true),
            Some(Duration::from_secs(60))
        );
        assert!(state.is_ejected());
    }

    #[test]
    fn no_ejection_when_the_service_cannot_spare_the_provider_or_it_is_off() {
        let state = OutlierState::default();
        for _ in 0..10 {
            assert_eq!(state.record_failure(&policy(60_000), || false), None);
            assert_eq!(
                state.record_failure(&OutlierPolicy::disabled(), || true),
                None
            );
        }
        assert!(!state.is_ejected());
    }

    #[test]
    fn an_ejection_ends_and_a_repeated_one_lasts_longer_up_to_the_maximum() {
        let state = OutlierState::default();
        let policy = policy(200);
        let eject = || {
            (0..3)
                .filter_map(|_| state.record_failure(&policy, || true))
                .next()
        };
        assert_eq!(eject(), Some(Duration::from_millis(200)));
        let started = Instant::now();
        while state.is_ejected() {
            assert!(started.elapsed() < Duration::from_secs(5), "never returned");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Failing again right after its return: twice as long, then capped at three times.
        assert_eq!(eject(), Some(Duration::from_millis(400)));
        while state.is_ejected() {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(eject(), Some(Duration::from_millis(600)));
        while state.is_ejected() {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(eject(), Some(Duration::from_millis(600)));
    }

    #[test]
    fn the_share_rounds_down_so_a_lone_provider_is_never_ejected() {
        let policy = OutlierPolicy::default();
        assert_eq!(policy.max_ejected(1), 0);
        assert_eq!(policy.max_ejected(2), 1);
        assert_eq!(policy.max_ejected(5), 2);
    }

    #[test]
    fn only_failures_that_say_the_provider_is_unwell_count() {
        assert!(counts_against_provider(&timeout()));
        assert!(counts_against_provider(&Error::Overloaded {
            endpoint: "p".into()
        }));
        assert!(!counts_against_provider(&Error::UnknownMethod {
            service: "s".into(),
            method: "m".into(),
            endpoint: "p".into(),
        }));
    }
}
