//! The application lifecycle ([`rmif_registry::App`]): `Server_type` decides what a process
//! does, and shutting down leaves the registry before the process stops.

use std::time::Duration;

use rmif_core::{RpcConfig, Stub};
use rmif_registry::discovery::{consumers_path, providers_path};
use rmif_registry::{App, AppError, Consistency, RegistryClient};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_suite::calculator::{Arithmetic, Calculator, CalculatorConsumer, CalculatorProvider};

async fn registry() -> (RegistryServer, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let member = RegistryServer::start(RegistryConfig::single(
        "127.0.0.1:0".parse().unwrap(),
        data.path(),
    ))
    .await
    .unwrap();
    (member, data)
}

fn config(registry: &RegistryServer, role: &str) -> RpcConfig {
    RpcConfig::parse(
        &format!(
            "Server_type={role}\nConfig_center_url={}\nProvider_bind=127.0.0.1\nProvider_port=0\n\
             Discovery_cache_file=none\nApplication=app-test\n",
            registry.client_addr()
        ),
        "test",
    )
    .unwrap()
}

async fn children(registry: &RegistryServer, path: &str) -> Vec<String> {
    RegistryClient::connect(&[registry.client_addr()])
        .children(path, Consistency::Linearizable)
        .await
        .map(|list| list.children)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_provider_announces_itself_and_leaves_the_registry_when_it_shuts_down() {
    let (member, _data) = registry().await;
    let app = App::from_config(config(&member, "provider"))
        .provide(CalculatorProvider::new(Arithmetic::new()))
        .start()
        .await
        .unwrap();
    let addr = app.local_addr().expect("a provider binds its port");
    let providers = providers_path(&CalculatorConsumer::DESCRIPTOR.key());
    assert_eq!(children(&member, &providers).await, vec![addr.to_string()]);
    // A provider does not call: it has no client and follows nothing.
    assert!(matches!(app.client(), Err(AppError::Role { .. })));

    let report = app.shutdown().await;
    assert!(report.drained);
    // Withdrawn at once, not after its session's timeout.
    assert_eq!(children(&member, &providers).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_consumer_binds_no_port_registers_itself_and_withdraws() {
    let (member, _data) = registry().await;
    let provider = App::from_config(config(&member, "provider"))
        .provide(CalculatorProvider::new(Arithmetic::new()))
        .start()
        .await
        .unwrap();
    let consumer = App::from_config(config(&member, "consumer"))
        .start()
        .await
        .unwrap();
    assert_eq!(consumer.local_addr(), None, "a consumer binds no port");
    let calculator: CalculatorConsumer = consumer.stub().unwrap();
    assert_eq!(calculator.add(2, 3).await.unwrap(), 5);

    let consumers = consumers_path(&CalculatorConsumer::DESCRIPTOR.key());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while children(&member, &consumers).await.len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.shutdown().await;
    assert_eq!(children(&member, &consumers).await, Vec::<String>::new());
    provider.shutdown().await;
}

#[tokio::test]
async fn server_type_refuses_what_it_does_not_allow() {
    let (member, _data) = registry().await;
    let refused = App::from_config(config(&member, "consumer"))
        .provide(CalculatorProvider::new(Arithmetic::new()))
        .start()
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("Server_type=consumer"),
        "{refused}"
    );
    let empty = App::from_config(config(&member, "provider"))
        .start()
        .await
        .unwrap_err();
    assert!(empty.to_string().contains("no service"), "{empty}");

    // `both` without services is a consumer: nothing to serve, so no port.
    let both = App::from_config(config(&member, "both"))
        .start()
        .await
        .unwrap();
    assert_eq!(both.local_addr(), None);
    assert!(both.client().is_ok());
    both.shutdown().await;
}

#[tokio::test]
async fn a_process_that_provides_and_consumes_calls_itself_through_the_registry() {
    let (member, _data) = registry().await;
    let app = App::from_config(config(&member, "both"))
        .provide(CalculatorProvider::new(Arithmetic::new()))
        .start()
        .await
        .unwrap();
    assert!(app.local_addr().is_some());
    let calculator: CalculatorConsumer = app.stub().unwrap();
    calculator.ready(Duration::from_secs(10)).await.unwrap();
    assert_eq!(calculator.accumulate(4).await.unwrap(), 4);
    assert_eq!(calculator.accumulate(5).await.unwrap(), 9);
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_configuration_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.properties");
    std::fs::write(&path, "Server_type=both\nServer_type_typo=1\n").unwrap();
    let error = App::from_file(&path).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("bad.properties:2"), "{text}");
}
