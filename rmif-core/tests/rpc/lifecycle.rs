//! Starting up: waiting for a provider before relying on it, with an error that says why none
//! is there, and clients and stubs made before any runtime runs.

use std::time::Duration;

use rmif_core::{Client, ConsumerConfig, Error, ProviderConfig, Server};

use crate::support::{Calculator, CalculatorConsumer, CalculatorProvider, LocalCalculator};

/// A loopback address nothing listens on (bound, then released).
fn unused_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn stub_for(addr: std::net::SocketAddr) -> CalculatorConsumer {
    Client::with_static_providers(ConsumerConfig {
        static_providers: vec![addr],
        ..ConsumerConfig::default()
    })
    .stub()
}

#[tokio::test]
async fn ready_says_why_no_provider_is_there() {
    let addr = unused_addr();
    let stub = stub_for(addr);
    match stub.ready(Duration::from_millis(300)).await {
        Err(Error::NoProvider { service, detail }) => {
            assert_eq!(service, "test.Calculator");
            assert!(detail.contains(&addr.to_string()), "{detail}");
            assert!(detail.contains("refused"), "{detail}");
        }
        other => panic!("{other:?}"),
    }

    let nobody: CalculatorConsumer =
        Client::with_static_providers(ConsumerConfig::default()).stub();
    match nobody.ready(Duration::from_millis(100)).await {
        Err(Error::NoProvider { detail, .. }) => {
            assert!(detail.contains("no provider is listed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ready_returns_once_a_provider_comes_up() {
    let addr = unused_addr();
    let stub = stub_for(addr);
    let waiting = tokio::spawn({
        let stub = stub.clone();
        async move { stub.ready(Duration::from_secs(10)).await }
    });
    // The provider starts after the consumer began waiting for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut config = ProviderConfig::loopback();
    config.port = addr.port();
    let server = Server::builder(config)
        .add_service(CalculatorProvider::new(LocalCalculator::default()))
        .serve()
        .await
        .expect("the provider starts on the released port");
    waiting
        .await
        .unwrap()
        .expect("ready once the provider is up");
    assert_eq!(stub.add(1, 2).await.unwrap(), 3);
    server.shutdown().await;
}

#[test]
fn clients_and_stubs_can_be_made_before_a_runtime_runs() {
    // No runtime here: making them must not need one (nothing starts before the first call).
    let client = Client::with_static_providers(ConsumerConfig::default());
    let early: CalculatorConsumer = client.stub();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Server::builder(ProviderConfig::loopback())
            .add_service(CalculatorProvider::new(LocalCalculator::default()))
            .serve()
            .await
            .unwrap();
        let made_outside = stub_for(server.local_addr());
        assert_eq!(made_outside.add(2, 2).await.unwrap(), 4);
        // The one made from a client without providers says so instead of panicking.
        assert!(matches!(
            early.add(1, 1).await,
            Err(crate::support::CalcError::Rpc(Error::NoProvider { .. }))
        ));
        server.shutdown().await;
    });
}

#[tokio::test]
async fn a_call_with_every_provider_down_names_each_and_why() {
    let addr = unused_addr();
    let stub = stub_for(addr);
    // The first call finds out that the provider refuses connections.
    assert!(stub.add(1, 2).await.is_err());
    match stub.add(1, 2).await {
        Err(crate::support::CalcError::Rpc(Error::NoProvider { detail, .. })) => {
            assert!(
                detail.contains(&format!("{addr}: connect failed")),
                "{detail}"
            );
            assert!(detail.contains("refused"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}
