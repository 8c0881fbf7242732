//! Discovery with every part a separate process: a 3-member registry (`rmif-registry`),
//! calculator providers (`examples/calculator_provider`) and consumers
//! (`examples/calculator_consumer`), stopped with SIGTERM, killed with SIGKILL and started
//! again while calls flow. The steady load comes from a consumer inside the test, which counts
//! every call's outcome and which provider answered it.
//!
//! The tests run one at a time (each starts its own cluster and providers; together they would
//! crowd two cores).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rmif_core::layer::{BoxError, ConsumerAnswer, ConsumerCall, Service, layer_fn};
use rmif_core::{Client, RpcConfig};
use rmif_registry::discovery::{ConsumerMetadata, consumer_discovery, consumers_path};
use rmif_registry::{Consistency, RegistryClient};
use rmif_suite::calculator::{Calculator, CalculatorConsumer};
use rmif_testkit::{Cluster, Process, Settings, free_port, program};
use tokio::time::Instant;

/// One multi-process scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound on anything the tests wait for: generous, the machine runs other tests too.
const PATIENCE: Duration = Duration::from_secs(20);

/// The calculator's service node name in the registry.
fn calculator_key() -> rmif_core::ServiceKey {
    <CalculatorConsumer as rmif_core::Stub>::DESCRIPTOR.key()
}

/// Properties shared by the test's processes: the registry, and timing short enough that a
/// dead process's session expires within seconds. A consumer keeps no cache file unless `extra`
/// names one: the tests leave nothing behind.
fn properties(cluster: &Cluster, role: &str, extra: &str) -> String {
    let cache = if extra.contains("Discovery_cache_file=") {
        ""
    } else {
        "Discovery_cache_file=none\n"
    };
    format!(
        "Server_type={role}\nConfig_center_url={}\nProvider_bind=127.0.0.1\n\
         Tick_time=500\nAgain_time=3\nConsumer_policy=rotate\n{cache}{extra}",
        cluster.servers_arg()
    )
}

/// A calculator provider process on its own port.
struct Provider {
    addr: SocketAddr,
    config: PathBuf,
    work_ms: u64,
    process: Process,
}

impl Provider {
    fn start(dir: &Path, cluster: &Cluster, work_ms: u64) -> Provider {
        let port = free_port();
        let config = dir.join(format!("provider-{port}.properties"));
        std::fs::write(
            &config,
            properties(cluster, "provider", &format!("Provider_port={port}\n")),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let process = Self::spawn(dir, &config, addr, work_ms);
        Provider {
            addr,
            config,
            work_ms,
            process,
        }
    }

    fn spawn(dir: &Path, config: &Path, addr: SocketAddr, work_ms: u64) -> Process {
        Process::start(
            &program("examples/calculator_provider"),
            &[config.to_str().unwrap(), "--work-ms", &work_ms.to_string()],
            &[("RMIF_LOG", "info")],
            dir.join(format!("provider-{}.log", addr.port())),
        )
    }

    /// Starts the provider again on the same port, as a restarted deployment would.
    fn restart(&mut self, dir: &Path) {
        self.process = Self::spawn(dir, &self.config, self.addr, self.work_ms);
    }
}

/// Waits until the registry lists exactly `expected` as the calculator's providers.
async fn wait_listed(registry: &RegistryClient, expected: &[SocketAddr]) {
    let path = rmif_registry::discovery::providers_path(&calculator_key());
    let mut want: Vec<String> = expected.iter().map(SocketAddr::to_string).collect();
    want.sort();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = registry
            .children(&path, Consistency::Linearizable)
            .await
            .map(|list| list.children)
            .unwrap_or_default();
        if listed == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the registry lists {listed:?} as providers, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the load's calls ended.
#[derive(Debug, Default)]
struct Outcomes {
    /// Successful calls.
    ok: AtomicU64,
    /// Failed calls: the method, when the call started, and the error.
    failures: Mutex<Vec<(&'static str, Instant, String)>>,
    /// Answers per provider.
    answered_by: Mutex<HashMap<SocketAddr, u64>>,
}

impl Outcomes {
    fn answered_by(&self, provider: SocketAddr) -> u64 {
        self.answered_by
            .lock()
            .unwrap()
            .get(&provider)
            .copied()
            .unwrap_or(0)
    }

    fn failures(&self) -> Vec<(&'static str, Instant, String)> {
        self.failures.lock().unwrap().clone()
    }
}

/// A consumer layer that counts which provider answered each call.
#[derive(Clone)]
struct CountAnswers<S> {
    inner: S,
    outcomes: Arc<Outcomes>,
}

impl<S> Service<ConsumerCall> for CountAnswers<S>
where
    S: Service<ConsumerCall, Response = ConsumerAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ConsumerAnswer;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ConsumerAnswer, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ConsumerCall) -> Self::Future {
        let outcomes = self.outcomes.clone();
        let answer = self.inner.call(call);
        Box::pin(async move {
            let answer = answer.await?;
            *outcomes
                .answered_by
                .lock()
                .unwrap()
                .entry(answer.peer())
                .or_default() += 1;
            Ok(answer)
        })
    }
}

/// Callers inside the test: `idempotent` tasks calling `add`, `non_idempotent` ones calling
/// `accumulate`, each call after the previous, until stopped.
struct Load {
    outcomes: Arc<Outcomes>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(cluster: &Cluster, idempotent: usize, non_idempotent: usize) -> Load {
        let config = RpcConfig::parse(&properties(cluster, "consumer", ""), "test consumer")
            .expect("the test's consumer configuration");
        let outcomes = Arc::new(Outcomes::default());
        let counting = outcomes.clone();
        let discovery = consumer_discovery(&config)
            .unwrap()
            .expect("a registry is configured");
        let client = Client::builder(config.consumer.clone())
            .discovery(discovery)
            .layer(layer_fn(move |inner| CountAnswers {
                inner,
                outcomes: counting.clone(),
            }))
            .build();
        let calculator: CalculatorConsumer = client.stub();
        calculator
            .ready(PATIENCE)
            .await
            .expect("the providers are reachable");
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for worker in 0..idempotent + non_idempotent {
            let calculator = calculator.clone();
            let outcomes = outcomes.clone();
            let stop = stop.clone();
            let is_idempotent = worker < idempotent;
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let started = Instant::now();
                    let (method, outcome) = if is_idempotent {
                        let sum = calculator.add(i, worker as u64).await;
                        let outcome = match sum {
                            Ok(sum) if sum == i + worker as u64 => Ok(()),
                            Ok(sum) => Err(format!("add({i}, {worker}) answered {sum}")),
                            Err(error) => Err(error.to_string()),
                        };
                        ("add", outcome)
                    } else {
                        let total = calculator.accumulate(1).await;
                        ("accumulate", total.map(drop).map_err(|e| e.to_string()))
                    };
                    match outcome {
                        Ok(()) => {
                            outcomes.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            outcomes
                                .failures
                                .lock()
                                .unwrap()
                                .push((method, started, error));
                        }
                    }
                }
            }));
        }
        Load {
            outcomes,
            stop,
            tasks,
        }
    }

    /// Lets the load run until `provider` has answered calls (waiting at most [`PATIENCE`]).
    async fn until_answered_by(&self, provider: SocketAddr) {
        let before = self.outcomes.answered_by(provider);
        let deadline = Instant::now() + PATIENCE;
        while self.outcomes.answered_by(provider) < before + 10 {
            assert!(
                Instant::now() < deadline,
                "{provider} answered no call within {PATIENCE:?}; answers so far: {:?}",
                self.outcomes.answered_by.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the load run until `calls` more calls succeeded.
    async fn for_calls(&self, calls: u64) {
        let target = self.outcomes.ok.load(Ordering::Relaxed) + calls;
        let deadline = Instant::now() + PATIENCE;
        while self.outcomes.ok.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled: {:?}",
                self.outcomes
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the callers; how their calls ended.
    async fn stop(self) -> Arc<Outcomes> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a caller panicked");
        }
        eprintln!(
            "load: {} calls succeeded, {} failed; answers by provider: {:?}",
            self.outcomes.ok.load(Ordering::Relaxed),
            self.outcomes.failures.lock().unwrap().len(),
            self.outcomes.answered_by.lock().unwrap()
        );
        self.outcomes
    }
}

/// A 3-member registry, `providers` calculator providers (each call takes `work_ms`) listed in
/// it, and the directory for their files.
async fn deployment(providers: usize, work_ms: u64) -> (Cluster, Vec<Provider>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, Settings::default()).await;
    let providers: Vec<Provider> = (0..providers)
        .map(|_| Provider::start(dir.path(), &cluster, work_ms))
        .collect();
    let addrs: Vec<SocketAddr> = providers.iter().map(|p| p.addr).collect();
    wait_listed(&cluster.client(), &addrs).await;
    (cluster, providers, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_provider_fails_no_call() {
    let _serial = SERIAL.lock().await;
    let (cluster, mut providers, dir) = deployment(3, 2).await;
    let load = Load::start(&cluster, 6, 2).await;
    for provider in &providers {
        load.until_answered_by(provider.addr).await;
    }

    for provider in &mut providers {
        // SIGTERM: the provider leaves the registry, drains its calls and exits.
        assert!(
            provider.process.terminate(PATIENCE),
            "the provider exited with an error; log:\n{}",
            provider.process.output()
        );
        load.for_calls(200).await;
        provider.restart(dir.path());
        load.until_answered_by(provider.addr).await;
    }

    let outcomes = load.stop().await;
    assert_eq!(outcomes.failures(), vec![], "no call may fail");
    assert!(outcomes.ok.load(Ordering::Relaxed) > 1000);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_call_fails_only_the_non_idempotent_calls_it_was_running() {
    let _serial = SERIAL.lock().await;
    // Each call takes 30 ms on the provider, so the killed one is always running some.
    let (cluster, mut providers, _dir) = deployment(3, 30).await;
    let (idempotent, non_idempotent) = (6, 3);
    let load = Load::start(&cluster, idempotent, non_idempotent).await;
    let victim = providers[0].addr;
    load.until_answered_by(victim).await;

    providers[0].process.kill();
    let killed = Instant::now();
    // Past the victim's session expiry (1.5 s): the list no longer has it.
    wait_listed(&cluster.client(), &[providers[1].addr, providers[2].addr]).await;
    load.for_calls(500).await;
    let outcomes = load.stop().await;

    let failures = outcomes.failures();
    for (method, started, error) in &failures {
        assert_eq!(
            *method, "accumulate",
            "an idempotent call failed over to another provider and must not fail: {error}"
        );
        // In flight at the kill: started before it, or in the moment the consumer takes to see
        // the connection close.
        assert!(
            *started < killed + Duration::from_secs(1),
            "a call started {:?} after the kill failed: {error}",
            started.duration_since(killed)
        );
        assert!(
            error.contains(&victim.to_string()),
            "only calls on the killed provider may fail: {error}"
        );
    }
    assert!(
        failures.len() <= non_idempotent,
        "at most one call per non-idempotent caller was in flight: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_leader_killed_fails_no_call_and_every_provider_stays_listed() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, providers, _dir) = deployment(3, 2).await;
    let load = Load::start(&cluster, 6, 2).await;
    load.for_calls(200).await;

    let leader = cluster.wait_for_leader(PATIENCE).await;
    cluster.kill(leader);
    let next = cluster.wait_for_leader(PATIENCE).await;
    assert_ne!(next, leader);
    // Longer than the providers' sessions (1.5 s): had a session been lost in the failover, a
    // provider would have dropped out of the list.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let addrs: Vec<SocketAddr> = providers.iter().map(|p| p.addr).collect();
    wait_listed(&cluster.client(), &addrs).await;
    for provider in &providers {
        load.until_answered_by(provider.addr).await;
    }

    let outcomes = load.stop().await;
    assert_eq!(outcomes.failures(), vec![], "no call may fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_receives_calls_within_seconds_of_starting() {
    let _serial = SERIAL.lock().await;
    let (cluster, mut providers, dir) = deployment(2, 2).await;
    let load = Load::start(&cluster, 4, 0).await;
    load.for_calls(100).await;

    providers.push(Provider::start(dir.path(), &cluster, 2));
    let newcomer = providers[2].addr;
    // The bound is the test's patience; the time it takes is a benchmark's business.
    load.until_answered_by(newcomer).await;

    let outcomes = load.stop().await;
    assert_eq!(outcomes.failures(), vec![], "no call may fail");
}

/// Runs the consumer example to completion; its output.
fn run_consumer(dir: &Path, config: &Path, args: &[&str], name: &str) -> (bool, String) {
    let mut all = vec![config.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut process = Process::start(
        &program("examples/calculator_consumer"),
        &all,
        &[],
        dir.join(format!("{name}.log")),
    );
    let status = process
        .wait_exit(Duration::from_secs(60))
        .expect("the consumer finishes its calls");
    (status.success(), process.output())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_started_while_every_registry_member_is_down_calls_from_its_cache() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, _providers, dir) = deployment(2, 0).await;
    let cache = dir.path().join("consumer.cache");
    let config = dir.path().join("consumer.properties");
    std::fs::write(
        &config,
        properties(
            &cluster,
            "consumer",
            &format!("Discovery_cache_file={}\n", cache.display()),
        ),
    )
    .unwrap();

    // A first run, with the registry up, leaves the lists it confirmed in the cache file.
    let (ok, output) = run_consumer(dir.path(), &config, &["--calls", "20"], "first");
    assert!(ok, "{output}");
    assert!(output.contains("calls=20 ok=20 failed=0"), "{output}");
    assert!(cache.exists(), "the first run wrote no cache file");

    for id in 1..=3 {
        cluster.kill(id);
    }
    let (ok, output) = run_consumer(dir.path(), &config, &["--calls", "20"], "second");
    assert!(ok, "{output}");
    assert!(output.contains("calls=20 ok=20 failed=0"), "{output}");
    assert!(
        output.contains("calling the providers of the discovery cache"),
        "the consumer says it runs from its cache: {output}"
    );
}

/// The consumers the registry lists for the calculator, by process id.
async fn consumer_map(registry: &RegistryClient) -> Vec<u32> {
    let path = consumers_path(&calculator_key());
    let Ok(list) = registry.children(&path, Consistency::Linearizable).await else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for name in list.children {
        let node = rmif_registry::path::join(&path, &name);
        if let Ok(node) = registry.get(&node, Consistency::Linearizable).await {
            let metadata = ConsumerMetadata::parse(&node.data).expect("consumer metadata");
            pids.push(metadata.pid);
        }
    }
    pids.sort_unstable();
    pids
}

async fn wait_consumer_map(registry: &RegistryClient, expected: &[u32]) {
    let mut want = expected.to_vec();
    want.sort_unstable();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = consumer_map(registry).await;
        if listed == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the registry lists consumers {listed:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_map_lists_running_consumers_and_forgets_a_killed_one() {
    let _serial = SERIAL.lock().await;
    let (cluster, _providers, dir) = deployment(1, 0).await;
    let config = dir.path().join("consumer.properties");
    std::fs::write(
        &config,
        properties(&cluster, "consumer", "Application=map-test\n"),
    )
    .unwrap();
    let consumer = |name: &str| {
        Process::start(
            &program("examples/calculator_consumer"),
            &[
                config.to_str().unwrap(),
                "--duration",
                "120",
                "--concurrency",
                "2",
            ],
            &[],
            dir.path().join(format!("{name}.log")),
        )
    };
    let mut killed = consumer("killed");
    let mut stopped = consumer("stopped");
    let registry = cluster.client();
    let (killed_pid, stopped_pid) = (killed.pid().unwrap(), stopped.pid().unwrap());
    wait_consumer_map(&registry, &[killed_pid, stopped_pid]).await;

    // SIGKILL: nothing withdraws the entry; it goes when the session (1.5 s) expires.
    killed.kill();
    wait_consumer_map(&registry, &[stopped_pid]).await;

    // SIGTERM: the consumer withdraws, reports its calls and exits.
    assert!(stopped.terminate(PATIENCE), "{}", stopped.output());
    let output = stopped.output();
    assert!(output.contains(" failed=0"), "{output}");
    wait_consumer_map(&registry, &[]).await;
}
