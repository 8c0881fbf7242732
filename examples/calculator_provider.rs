//! Serves the calculator until interrupted (Ctrl-C or SIGTERM), then shuts down gracefully.
//!
//! ```text
//! cargo run --example calculator_provider [CONFIG]
//! ```
//!
//! CONFIG defaults to examples/calculator.properties. If it sets `Config_center_url`, the
//! provider announces itself in that registry (and withdraws before stopping).

use std::process::ExitCode;

use rmif_core::{RpcConfig, Server};
use rmif_registry::discovery::announce;
use rmif_suite::calculator::{Arithmetic, CalculatorProvider};

const DEFAULT_CONFIG: &str = "examples/calculator.properties";

#[tokio::main]
async fn main() -> ExitCode {
    rmif_suite::init_logging();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_CONFIG.to_owned());
    let config = match RpcConfig::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("calculator_provider: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::builder(config.provider.clone())
        .add_service(CalculatorProvider::new(Arithmetic))
        .serve()
        .await
    {
        Ok(server) => server,
        Err(error) => {
            eprintln!("calculator_provider: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("calculator provider listening on {}", server.local_addr());
    let registration = match announce(&server, &config).await {
        Ok(registration) => registration,
        Err(error) => {
            eprintln!("calculator_provider: cannot announce in the registry: {error}");
            server.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    if registration.is_some() {
        println!("announced in the registry at {}", config.registry.join(","));
    }
    rmif_suite::shutdown_signal().await;
    // Leave the registry first, so consumers stop sending new calls, then drain.
    if let Some(registration) = registration {
        registration.withdraw().await;
    }
    let report = server.shutdown().await;
    println!(
        "calculator provider stopped (drained: {}, aborted calls: {})",
        report.drained, report.aborted
    );
    ExitCode::SUCCESS
}
