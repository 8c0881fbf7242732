//! Balancing and failure handling end to end: consistent hashing on a method's key argument,
//! outlier ejection, and the cluster policies (failover, failfast, forking, failsafe).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmif_core::balance::BalancePolicy;
use rmif_core::{Client, ConsumerConfig, OutlierPolicy, ProviderConfig, Server, ServerHandle};

use crate::support::CalcError;

/// Each provider answers with its own number, so that the consumer sees who served it.
#[rmif_core::service(name = "test.Sessions")]
pub trait Sessions {
    /// Routed by `user` alone.
    #[rmif(hash_key = "user")]
    async fn touch(&self, note: u64, user: String) -> Result<u32, CalcError>;
    /// Routed by all its arguments.
    async fn touch_any(&self, note: u64, user: String) -> Result<u32, CalcError>;
}

struct Numbered(u32);

impl Sessions for Numbered {
    async fn touch(&self, _: u64, _: String) -> Result<u32, CalcError> {
        Ok(self.0)
    }
    async fn touch_any(&self, _: u64, _: String) -> Result<u32, CalcError> {
        Ok(self.0)
    }
}

async fn providers(n: u32) -> Vec<ServerHandle> {
    let mut servers = Vec::new();
    for number in 0..n {
        let server = Server::builder(ProviderConfig::loopback())
            .add_service(SessionsProvider::new(Numbered(number)))
            .serve()
            .await
            .expect("provider starts");
        servers.push(server);
    }
    servers
}

#[tokio::test]
async fn consistent_hashing_on_a_key_argument_keeps_each_key_on_one_provider() {
    let servers = providers(4).await;
    let sessions: SessionsConsumer = Client::with_static_providers(ConsumerConfig {
        static_providers: servers.iter().map(ServerHandle::local_addr).collect(),
        policy: BalancePolicy::ConsistentHash,
        ..ConsumerConfig::default()
    })
    .stub();

    let mut served_by: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut any_served_by: HashMap<String, HashSet<u32>> = HashMap::new();
    for user in (0..40).map(|u| format!("user-{u}")) {
        for note in 0..8 {
            let by = sessions.touch(note, user.clone()).await.expect("touch");
            served_by.entry(user.clone()).or_default().insert(by);
            let by = sessions
                .touch_any(note, user.clone())
                .await
                .expect("touch_any");
            any_served_by.entry(user.clone()).or_default().insert(by);
        }
    }
    for (user, by) in &served_by {
        assert_eq!(by.len(), 1, "{user} was served by {by:?}");
    }
    let used: HashSet<u32> = served_by.values().flatten().copied().collect();
    assert!(used.len() >= 3, "40 users landed on only {used:?}");
    // Without the key, the other arguments move the same user between providers.
    assert!(
        any_served_by.values().any(|by| by.len() > 1),
        "hashing all the arguments kept every user on one provider"
    );
}

/// A provider that answers its number, or (if stuck) never in time.
#[rmif_core::service(name = "test.Worker")]
pub trait Worker {
    #[rmif(timeout_ms = 150)]
    async fn work(&self) -> Result<u32, CalcError>;
    #[rmif(timeout_ms = 150, idempotent, cluster = "forking")]
    async fn work_forked(&self) -> Result<u32, CalcError>;
    #[rmif(timeout_ms = 150, failsafe)]
    async fn work_or_default(&self) -> Result<u32, CalcError>;
    /// Answers its own error at once.
    #[rmif(failsafe)]
    async fn refuse(&self) -> Result<u32, CalcError>;
}

struct MaybeStuck {
    number: u32,
    stuck: bool,
    /// Calls stopped before their end (cancelled by the consumer), across all providers.
    cancelled: Arc<AtomicUsize>,
}

/// Counts a call as cancelled if it is dropped before `finish`.
struct Unfinished(Option<Arc<AtomicUsize>>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(cancelled) = &self.0 {
            cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Worker for MaybeStuck {
    async fn work(&self) -> Result<u32, CalcError> {
        let mut unfinished = Unfinished(Some(self.cancelled.clone()));
        if self.stuck {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
        unfinished.0 = None;
        Ok(self.number)
    }
    async fn work_forked(&self) -> Result<u32, CalcError> {
        self.work().await
    }
    async fn work_or_default(&self) -> Result<u32, CalcError> {
        self.work().await.map(|number| number + 100)
    }
    async fn refuse(&self) -> Result<u32, CalcError> {
        Err(CalcError::DivisionByZero)
    }
}

/// Providers numbered 0.., the `stuck` ones never answering in time, and a consumer calling
/// them in turn, without retries, under `outlier`.
async fn workers(stuck: &[bool], outlier: OutlierPolicy) -> (Vec<ServerHandle>, WorkerConsumer) {
    workers_counting(stuck, outlier, Arc::default()).await
}

/// [`workers`] whose cancelled calls are counted in `cancelled`.
async fn workers_counting(
    stuck: &[bool],
    outlier: OutlierPolicy,
    cancelled: Arc<AtomicUsize>,
) -> (Vec<ServerHandle>, WorkerConsumer) {
    let mut servers = Vec::new();
    for (number, &stuck) in stuck.iter().enumerate() {
        let worker = MaybeStuck {
            number: number as u32,
            stuck,
            cancelled: cancelled.clone(),
        };
        let server = Server::builder(ProviderConfig::loopback())
            .add_service(WorkerProvider::new(worker))
            .serve()
            .await
            .expect("provider starts");
        servers.push(server);
    }
    let consumer = Client::with_static_providers(ConsumerConfig {
        static_providers: servers.iter().map(ServerHandle::local_addr).collect(),
        policy: BalancePolicy::RoundRobin,
        retries: 0,
        outlier,
        ..ConsumerConfig::default()
    })
    .stub();
    (servers, consumer)
}

fn eject_after_three() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(60),
        max_ejection: Duration::from_secs(60),
        max_ejected_percent: 50,
    }
}

#[tokio::test]
async fn a_provider_that_keeps_timing_out_is_ejected_and_the_calls_go_to_the_others() {
    let (_servers, worker) = workers(&[true, false], eject_after_three()).await;
    let mut timeouts = 0;
    let mut served_by = Vec::new();
    for _ in 0..30 {
        match worker.work().await {
            Ok(number) => served_by.push(number),
            Err(CalcError::Rpc(rmif_core::Error::Timeout { .. })) => timeouts += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(timeouts, 3, "calls kept going to the stuck provider");
    assert_eq!(served_by.len(), 27);
    assert!(served_by.iter().all(|&n| n == 1), "{served_by:?}");

    // Off, the stuck provider keeps its turn.
    let (_servers, worker) = workers(&[true, false], OutlierPolicy::disabled()).await;
    let mut timeouts = 0;
    for _ in 0..10 {
        if worker.work().await.is_err() {
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, 5);
}

#[tokio::test]
async fn no_more_than_the_allowed_share_is_ejected_and_a_lone_provider_never_is() {
    // Both stuck: one is ejected (half of two), the other keeps being called; no call is
    // refused for want of a provider.
    let (_servers, worker) = workers(&[true, true], eject_after_three()).await;
    for _ in 0..12 {
        match worker.work().await {
            Err(CalcError::Rpc(rmif_core::Error::Timeout { .. })) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    let (_servers, worker) = workers(&[true], eject_after_three()).await;
    for _ in 0..6 {
        match worker.work().await {
            Err(CalcError::Rpc(rmif_core::Error::Timeout { .. })) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn forking_answers_from_the_first_provider_and_cancels_the_others() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (_servers, worker) =
        workers_counting(&[true, false], OutlierPolicy::disabled(), cancelled.clone()).await;
    for _ in 0..10 {
        // The stuck provider is always one of the two; the other answers.
        assert_eq!(worker.work_forked().await.expect("forked call"), 1);
    }
    // Each call's attempt on the stuck provider was cancelled there once the other answered.
    crate::support::eventually("the stuck provider's calls are cancelled", || {
        cancelled.load(Ordering::SeqCst) == 10
    })
    .await;
    // The same calls without forking time out whenever the stuck provider's turn comes.
    let failed = futures_util::future::join_all((0..10).map(|_| worker.work()))
        .await
        .into_iter()
        .filter(Result::is_err)
        .count();
    assert_eq!(failed, 5);
}

#[tokio::test]
async fn failsafe_returns_the_default_without_an_answer_but_keeps_the_methods_errors() {
    let (_servers, worker) = workers(&[true, false], OutlierPolicy::disabled()).await;
    let mut answers: Vec<u32> = Vec::new();
    for _ in 0..6 {
        answers.push(
            worker
                .work_or_default()
                .await
                .expect("failsafe never fails"),
        );
    }
    answers.sort_unstable();
    assert_eq!(answers, [0, 0, 0, 101, 101, 101]);
    assert!(matches!(
        worker.refuse().await,
        Err(CalcError::DivisionByZero)
    ));
}

#[tokio::test]
async fn failover_tries_another_provider_where_failfast_returns_the_first_failure() {
    use rmif_core::ClusterPolicy;

    use crate::support::{
        Calculator, CalculatorConsumer, consumer_config, eventually, start_provider,
    };

    // `busy` takes one call at a time, and one is parked on it: it answers "overloaded".
    let (busy, probe) = start_provider(ProviderConfig {
        max_concurrent_requests: 1,
        ..ProviderConfig::loopback()
    })
    .await;
    let (idle, _) = start_provider(ProviderConfig::loopback()).await;
    let parker = crate::support::consumer(&[&busy]);
    let parked = tokio::spawn(async move { parker.park().await });
    eventually("the call is parked", || {
        probe.parked.load(Ordering::SeqCst) == 1
    })
    .await;

    let calculator = |cluster| -> CalculatorConsumer {
        Client::with_static_providers(ConsumerConfig {
            policy: BalancePolicy::RoundRobin,
            cluster,
            outlier: OutlierPolicy::disabled(),
            ..consumer_config(&[&busy, &idle])
        })
        .stub()
    };
    let failover = calculator(ClusterPolicy::Failover);
    for _ in 0..10 {
        assert_eq!(failover.add(2, 3).await.expect("failed over"), 5);
    }
    let failfast = calculator(ClusterPolicy::Failfast);
    let mut overloaded = 0;
    for _ in 0..10 {
        match failfast.add(2, 3).await {
            Ok(5) => {}
            Err(CalcError::Rpc(rmif_core::Error::Overloaded { .. })) => overloaded += 1,
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(overloaded, 5);
    probe.release.notify_waiters();
    parked.await.unwrap().expect("the parked call ends");
}
