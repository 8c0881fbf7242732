//! Discovery end to end: providers announce themselves in a registry, consumers follow them,
//! and neither a provider leaving nor the registry restarting breaks the consumer's calls.

use std::sync::Arc;
use std::time::Duration;

use rmif_core::balance::BalancePolicy;
use rmif_core::{ProviderConfig, RpcConfig, Server, ServerHandle};
use rmif_registry::discovery::{Registration, announce, consumer_client};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_suite::calculator::{Arithmetic, Calculator, CalculatorConsumer, CalculatorProvider};
use tokio::time::Instant;

fn config(registry: &RegistryServer) -> RpcConfig {
    let mut config = RpcConfig {
        registry: vec![registry.client_addr().to_string()],
        provider: ProviderConfig {
            tick: Duration::from_millis(300),
            again: 3,
            ..ProviderConfig::loopback()
        },
        ..RpcConfig::default()
    };
    config.consumer.policy = BalancePolicy::RoundRobin;
    config
}

async fn provider(config: &RpcConfig) -> (ServerHandle, Registration) {
    let server = Server::builder(config.provider.clone())
        .add_service(CalculatorProvider::new(Arithmetic::new()))
        .serve()
        .await
        .unwrap();
    let registration = announce(&server, config)
        .await
        .unwrap()
        .expect("a registry is configured");
    (server, registration)
}

async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_follow_providers_as_they_come_and_go() {
    let data = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start(RegistryConfig::single(
        "127.0.0.1:0".parse().unwrap(),
        data.path(),
    ))
    .await
    .unwrap();
    let config = config(&registry);
    let (first, first_registration) = provider(&config).await;

    let client = consumer_client(&config).unwrap();
    let calculator = Arc::new(CalculatorConsumer::new(&client));
    assert_eq!(calculator.add(1, 2).await.unwrap(), 3);

    // A second provider appears: the consumer starts using it without being told.
    let (second, second_registration) = provider(&config).await;
    eventually(
        "both providers serve calls",
        Duration::from_secs(5),
        async || {
            for _ in 0..4 {
                calculator.add(1, 1).await.unwrap();
            }
            first.active_calls() == 0 && second.connections() > 0
        },
    )
    .await;

    // The first provider dies without withdrawing: its session expires (tick 300 ms x 3) and
    // its node goes; calls keep succeeding throughout.
    drop(first_registration);
    first.shutdown_within(Duration::ZERO).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(calculator.add(2, 2).await.unwrap(), 4);
    }
    let registry_client = rmif_registry::RegistryClient::connect(&[registry.client_addr()]);
    let providers = registry_client
        .children(
            &rmif_registry::discovery::providers_path(&CalculatorProvider::DESCRIPTOR.key()),
            rmif_registry::Consistency::Linearizable,
        )
        .await
        .unwrap();
    assert_eq!(providers.children, vec![second.local_addr().to_string()]);

    second_registration.withdraw().await;
    second.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restart_never_empties_the_consumers_list() {
    let data = tempfile::tempdir().unwrap();
    let registry_config = RegistryConfig::single("127.0.0.1:0".parse().unwrap(), data.path());
    let registry = RegistryServer::start(registry_config.clone())
        .await
        .unwrap();
    let registry_addr = registry.client_addr();
    let config = config(&registry);
    let (server, _registration) = provider(&config).await;
    let client = consumer_client(&config).unwrap();
    let calculator = CalculatorConsumer::new(&client);
    assert_eq!(calculator.add(1, 2).await.unwrap(), 3);

    // The registry goes away; calls keep working from the last known list.
    registry.shutdown().await;
    for i in 0..50 {
        assert_eq!(
            calculator.add(i, 1).await.unwrap(),
            i + 1,
            "call {i} while the registry is down"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // It comes back on the same address with the same data; the provider's session survived
    // (a new leader gives every session a fresh timeout) and calls never stopped.
    let restarted = RegistryServer::start(RegistryConfig {
        client_addr: registry_addr,
        ..registry_config
    })
    .await
    .unwrap();
    for i in 0..50 {
        assert_eq!(calculator.add(i, 2).await.unwrap(), i + 2);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown().await;
    restarted.shutdown().await;
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// One thread: the discovery tasks log through the subscriber this test sets for its thread.
#[tokio::test(flavor = "current_thread")]
async fn a_consumer_warns_when_the_service_it_calls_was_announced_under_another_module_path() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let data = tempfile::tempdir().unwrap();
    let registry = RegistryServer::start(RegistryConfig::single(
        "127.0.0.1:0".parse().unwrap(),
        data.path(),
    ))
    .await
    .unwrap();
    let config = config(&registry);
    // The provider was built when the trait lived in another module: its default wire name
    // was that module's path.
    let moved = rmif_core::ServiceKey::new("billing::old_place::Calculator");
    let server = Server::builder(config.provider.clone())
        .add_service_as(moved, CalculatorProvider::new(Arithmetic::new()))
        .serve()
        .await
        .unwrap();
    let registration = announce(&server, &config).await.unwrap().unwrap();

    let client = consumer_client(&config).unwrap();
    let calculator: CalculatorConsumer = client.stub();
    let error = calculator
        .ready(Duration::from_secs(2))
        .await
        .expect_err("nobody provides the consumer's wire name");
    assert!(
        error.to_string().contains("no provider is listed"),
        "{error}"
    );
    let text = log.text();
    assert!(
        text.contains("billing::old_place::Calculator")
            && text.contains("moving the trait renames it"),
        "the consumer names the likely rename: {text}"
    );

    registration.withdraw().await;
    server.shutdown().await;
}
