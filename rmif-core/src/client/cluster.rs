//! What a consumer does when a call's provider fails (the cluster policy), and the retry budget
//! that keeps failover from multiplying the load on a cluster that is already failing.

use std::sync::atomic::{AtomicI64, Ordering};

/// How a call treats failing providers (`Cluster` in configuration, `Cluster.<method>` for one
/// method, `#[rmif(cluster = "…")]` in the trait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterPolicy {
    /// Try another provider after a failure that allows it (the call certainly did not run,
    /// or it may have run and the method is idempotent), within `Retries`, the call's deadline
    /// and the retry budget (`failover`, the default).
    #[default]
    Failover,
    /// Never try another provider: the first failure is the call's (`failfast`).
    Failfast,
    /// Send an idempotent call to `Forks` providers at once; the first answer wins and the
    /// others are cancelled (`forking`). A method that is not idempotent fails over instead,
    /// since it would run several times.
    Forking,
}

impl ClusterPolicy {
    /// Configuration names, in declaration order.
    pub const NAMES: [&'static str; 3] = ["failover", "failfast", "forking"];

    /// The policy with this configuration name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "failover" => ClusterPolicy::Failover,
            "failfast" => ClusterPolicy::Failfast,
            "forking" => ClusterPolicy::Forking,
            _ => return None,
        })
    }
}

/// Retries a consumer may make whatever the rate of calls, for a service that has seen no
/// calls yet; also the most the budget saves up.
const RESERVE: i64 = 10 * TOKEN;
/// One retry, in the budget's units.
const TOKEN: i64 = 1000;

/// Bounds retries to a share of calls (`Retry_budget_percent`): every call adds that share of
/// a retry to the budget (up to a small reserve) and every retry takes a whole one. When a
/// whole cluster fails, its load then grows by that share at most, instead of by `Retries`
/// times.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Thousandths of a retry.
    balance: AtomicI64,
    per_call: i64,
}

impl RetryBudget {
    /// A budget of `percent` retries per hundred calls, starting with the reserve.
    pub(crate) fn new(percent: u32) -> Self {
        RetryBudget {
            balance: AtomicI64::new(RESERVE),
            per_call: i64::from(percent.min(100)) * TOKEN / 100,
        }
    }

    /// A call starts. While the budget is full this is one load.
    pub(crate) fn deposit(&self) {
        if self.per_call == 0 || self.balance.load(Ordering::Relaxed) >= RESERVE {
            return;
        }
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                Some((balance + self.per_call).min(RESERVE))
            });
    }

    /// Takes one retry from the budget; false (and nothing taken) if it has none left.
    pub(crate) fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance >= TOKEN).then_some(balance - TOKEN)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ClusterPolicy::NAMES {
            let policy = ClusterPolicy::from_name(name).unwrap();
            assert_eq!(ClusterPolicy::NAMES[policy as usize], name);
        }
        assert_eq!(
            ClusterPolicy::from_name("FailFast"),
            Some(ClusterPolicy::Failfast)
        );
        assert_eq!(ClusterPolicy::from_name("failsafe"), None);
    }

    #[test]
    fn the_budget_allows_the_reserve_then_its_share_of_calls() {
        let budget = RetryBudget::new(20);
        // The reserve: ten retries before any call.
        assert_eq!((0..20).filter(|_| budget.withdraw()).count(), 10);
        // Then one retry per five calls, however many are asked for.
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            retries += (0..3).filter(|_| budget.withdraw()).count();
        }
        assert_eq!(retries, 200);
    }

    #[test]
    fn the_budget_saves_up_no_more_than_the_reserve() {
        let budget = RetryBudget::new(50);
        for _ in 0..10_000 {
            budget.deposit();
        }
        assert_eq!((0..100).filter(|_| budget.withdraw()).count(), 10);
        let none = RetryBudget::new(0);
        for _ in 0..100 {
            none.deposit();
        }
        assert_eq!((0..100).filter(|_| none.withdraw()).count(), 10);
    }
}
