//! The main demo: an embedded single-member registry, two calculator providers that announce
//! themselves in it, and a consumer that finds them there. It makes calls, shows the load spread
//! over both providers, withdraws one, and keeps calling the other.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The last line is `calls=N ok=K failed=F`; the exit code is non-zero if any call failed.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmif_core::balance::BalancePolicy;
use rmif_core::{ProviderConfig, RpcConfig, Server, ServerHandle};
use rmif_registry::discovery::{Registration, announce, consumer_client};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_suite::calculator::{
    Arithmetic, CalcError, Calculator, CalculatorConsumer, CalculatorProvider,
};

/// A provider's calculator that counts the calls it serves.
#[derive(Clone, Default)]
struct Counted {
    served: Arc<AtomicU64>,
}

impl Calculator for Counted {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        Arithmetic.add(a, b).await
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        Arithmetic.div(a, b).await
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        Arithmetic.echo(body).await
    }
}

struct Provider {
    server: ServerHandle,
    registration: Option<Registration>,
    counter: Counted,
}

async fn start_provider(config: &RpcConfig) -> Result<Provider, Box<dyn std::error::Error>> {
    let counter = Counted::default();
    let server = Server::builder(config.provider.clone())
        .add_service(CalculatorProvider::new(counter.clone()))
        .serve()
        .await?;
    let registration = announce(&server, config).await?;
    Ok(Provider {
        server,
        registration,
        counter,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    rmif_suite::init_logging();
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    // 1. The registry: one member, on a free loopback port, data in a temporary directory.
    let data = tempfile::tempdir()?;
    let registry =
        RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
    println!("registry    listening on {}", registry.client_addr());

    // Providers and the consumer share one configuration, as they would share a file.
    let config = RpcConfig {
        registry: vec![registry.client_addr().to_string()],
        provider: ProviderConfig {
            tick: Duration::from_millis(500),
            again: 3,
            ..ProviderConfig::loopback()
        },
        ..RpcConfig::default()
    };

    // 2. Two providers announce themselves in the registry.
    let mut first = start_provider(&config).await?;
    let second = start_provider(&config).await?;
    println!("provider A  listening on {}", first.server.local_addr());
    println!("provider B  listening on {}", second.server.local_addr());

    // 3. The consumer finds them through the registry and calls them in turn.
    let mut consumer_config = config.clone();
    consumer_config.consumer.policy = BalancePolicy::RoundRobin;
    let client = consumer_client(&consumer_config)?;
    let calculator = CalculatorConsumer::new(&client);

    let (mut calls, mut ok) = (0u64, 0u64);
    let mut check = |good: bool| {
        calls += 1;
        ok += u64::from(good);
    };

    let sum = calculator.add(40, 2).await;
    println!("add(40, 2)  = {sum:?}");
    check(sum == Ok(42));
    let quotient = calculator.div(1, 0).await;
    println!("div(1, 0)   = {quotient:?}   (the provider's own error, through the trait)");
    check(quotient == Err(CalcError::DivisionByZero));
    for i in 0..20 {
        check(calculator.add(i, i).await == Ok(2 * i));
    }
    println!(
        "served so far: provider A {}, provider B {}",
        first.counter.served.load(Ordering::Relaxed),
        second.counter.served.load(Ordering::Relaxed)
    );

    // 4. Provider A withdraws from the registry and stops; the consumer's list follows.
    if let Some(registration) = first.registration.take() {
        registration.withdraw().await;
    }
    first.server.shutdown().await;
    println!("provider A  withdrew and stopped");
    let before = second.counter.served.load(Ordering::Relaxed);
    for i in 0..20 {
        check(calculator.add(i, 1).await == Ok(i + 1));
    }
    println!(
        "after A left: provider B served {} of the next 20 calls",
        second.counter.served.load(Ordering::Relaxed) - before
    );

    if let Some(registration) = second.registration {
        registration.withdraw().await;
    }
    second.server.shutdown().await;
    registry.shutdown().await;
    println!("calls={calls} ok={ok} failed={}", calls - ok);
    Ok(ok == calls)
}
