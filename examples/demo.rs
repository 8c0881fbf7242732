//! The main demo: an embedded single-member registry, three calculator providers that announce
//! themselves in it, and a consumer that finds them there. It spreads calls over the three, then
//! one provider crashes (SIGKILL, no goodbye) and another shuts down cleanly, and the consumer
//! carries on through both.
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

use rmif_core::RpcConfig;
use rmif_registry::discovery::providers_path;
use rmif_registry::{App, Consistency, RegistryClient};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_suite::calculator::{
    Arithmetic, CalcError, Calculator, CalculatorConsumer, CalculatorProvider,
};
use tokio::time::Instant;

/// A provider's calculator that counts the calls it serves.
#[derive(Clone, Default)]
struct Counted {
    served: Arc<AtomicU64>,
    calculator: Arithmetic,
}

impl Counted {
    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Calculator for Counted {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.calculator.add(a, b).await
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.calculator.div(a, b).await
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.calculator.echo(body).await
    }

    async fn echo_bytes(&self, body: bytes::Bytes) -> Result<bytes::Bytes, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.calculator.echo_bytes(body).await
    }

    async fn accumulate(&self, amount: u64) -> Result<u64, CalcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.calculator.accumulate(amount).await
    }
}

/// The properties every process of the demo shares, as they would share a file: the registry,
/// a free port for each provider, and heartbeats every 500 ms (a process that stops answering
/// three of them is gone).
fn properties(registry: &str, role: &str) -> String {
    format!(
        "Server_type={role}\nConfig_center_url={registry}\n\
         Provider_bind=127.0.0.1\nProvider_port=0\n\
         Tick_time=500\nAgain_time=3\nConsumer_policy=rotate\n"
    )
}

/// The flag with which the demo runs itself as the provider that crashes.
const CRASHING_PROVIDER: &str = "--crashing-provider";

fn main() -> ExitCode {
    rmif_suite::init_logging();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(CRASHING_PROVIDER) {
        let registry = args.next().unwrap_or_default();
        return runtime.block_on(serve_until_killed(&registry));
    }
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo: {}", rmif_suite::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Provider C: a process of its own, so that it can crash for real.
async fn serve_until_killed(registry: &str) -> ExitCode {
    let started = match RpcConfig::parse(&properties(registry, "provider"), "demo") {
        Ok(config) => {
            App::from_config(config)
                .provide(CalculatorProvider::new(Arithmetic::new()))
                .start()
                .await
        }
        Err(error) => Err(error.into()),
    };
    match started {
        Ok(app) => {
            app.run().await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo provider C: {}", rmif_suite::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The crashing provider's process, killed if the demo ends first.
struct ChildProvider(std::process::Child);

impl Drop for ChildProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the registry lists `count` calculator providers.
async fn wait_listed(registry: &RegistryClient, count: usize) -> Result<Vec<String>, String> {
    let path = providers_path(&<CalculatorConsumer as rmif_core::Stub>::DESCRIPTOR.key());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = registry
            .children(&path, Consistency::Linearizable)
            .await
            .map(|list| list.children)
            .unwrap_or_default();
        if listed.len() == count {
            return Ok(listed);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the registry lists {listed:?}, not {count} providers"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    // 1. The registry: one member, on a free loopback port, data in a temporary directory.
    let data = tempfile::tempdir()?;
    let registry =
        RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
    let registry_addr = registry.client_addr().to_string();
    let registry_client = RegistryClient::connect(&[registry.client_addr()]);
    println!("registry    listening on {registry_addr}");

    // 2. Three providers announce themselves: A and B in this process, C in a process of its own.
    let provider_config = RpcConfig::parse(&properties(&registry_addr, "provider"), "demo")?;
    let (a, b) = (Counted::default(), Counted::default());
    let provider_a = App::from_config(provider_config.clone())
        .provide(CalculatorProvider::new(a.clone()))
        .start()
        .await?;
    let provider_b = App::from_config(provider_config)
        .provide(CalculatorProvider::new(b.clone()))
        .start()
        .await?;
    let mut provider_c = ChildProvider(
        std::process::Command::new(std::env::current_exe()?)
            .args([CRASHING_PROVIDER, &registry_addr])
            .stdin(std::process::Stdio::null())
            .spawn()?,
    );
    println!("provider A  listening on {}", address(&provider_a));
    println!("provider B  listening on {}", address(&provider_b));
    println!("provider C  started as process {}", provider_c.0.id());
    let listed = wait_listed(&registry_client, 3).await?;
    println!("registry    lists {}", listed.join(", "));

    // 3. The consumer finds them through the registry and calls them in turn.
    // Its cache of provider lists goes with the registry's data: both are this run's only.
    let consumer_properties = format!(
        "{}Discovery_cache_file={}\n",
        properties(&registry_addr, "consumer"),
        data.path().join("consumer.cache").display()
    );
    let consumer = App::from_config(RpcConfig::parse(&consumer_properties, "demo")?)
        .start()
        .await?;
    let calculator: CalculatorConsumer = consumer.stub()?;
    calculator.ready(Duration::from_secs(10)).await?;

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
    for i in 0..30 {
        check(calculator.add(i, i).await == Ok(2 * i));
    }
    let (served_a, served_b) = (a.served(), b.served());
    println!(
        "served so far: provider A {served_a}, provider B {served_b}, provider C {}",
        32 - served_a - served_b
    );

    // 4. Provider C crashes: no goodbye to the registry, its connections cut mid-stream. Calls
    //    that were bound for it go to A and B; the registry drops it when its session expires.
    provider_c.0.kill()?;
    provider_c.0.wait()?;
    let crashed = Instant::now();
    println!("provider C  crashed (SIGKILL)");
    for i in 0..20 {
        check(calculator.add(i, 2).await == Ok(i + 2));
    }
    wait_listed(&registry_client, 2).await?;
    println!(
        "registry    dropped provider C {} ms after the crash; the 20 calls meanwhile went to A and B",
        crashed.elapsed().as_millis()
    );

    // 5. Provider A shuts down cleanly: it leaves the registry first, then drains its calls.
    let report = provider_a.shutdown().await;
    println!(
        "provider A  withdrew and stopped (drained: {})",
        report.drained
    );
    let before = b.served();
    for i in 0..20 {
        check(calculator.add(i, 1).await == Ok(i + 1));
    }
    println!(
        "after A left: provider B served {} of the next 20 calls",
        b.served() - before
    );

    consumer.shutdown().await;
    provider_b.shutdown().await;
    registry.shutdown().await;
    println!("calls={calls} ok={ok} failed={}", calls - ok);
    Ok(ok == calls)
}

fn address(app: &rmif_registry::RunningApp) -> String {
    app.local_addr()
        .map_or_else(|| "(no port)".to_owned(), |addr| addr.to_string())
}
