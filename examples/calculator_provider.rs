//! Serves the calculator until Ctrl-C or SIGTERM, then leaves the registry, drains its calls and
//! stops.
//!
//! ```text
//! cargo run --example calculator_provider [CONFIG] [--work-ms N]
//! ```
//!
//! CONFIG defaults to examples/calculator.properties. If it sets `Config_center_url`, the
//! provider announces itself in that registry. `--work-ms N` makes every call take N ms, as a
//! handler awaiting a database would.

use std::process::ExitCode;
use std::time::Duration;

use rmif_registry::App;
use rmif_suite::calculator::{Arithmetic, CalculatorProvider};

const DEFAULT_CONFIG: &str = "examples/calculator.properties";
const USAGE: &str = "usage: calculator_provider [CONFIG] [--work-ms N]";

#[tokio::main]
async fn main() -> ExitCode {
    rmif_suite::init_logging();
    let (config, work) = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("calculator_provider: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let calculator = Arithmetic::new().with_work(work);
    let app = match App::from_file(&config) {
        Ok(app) => app.provide(CalculatorProvider::new(calculator)),
        Err(error) => {
            eprintln!("calculator_provider: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = match app.start().await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("calculator_provider: {}", rmif_suite::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = app.local_addr() {
        println!("calculator provider listening on {addr}");
    }
    let report = app.run().await;
    println!(
        "calculator provider stopped (drained: {}, aborted calls: {})",
        report.drained, report.aborted
    );
    ExitCode::SUCCESS
}

fn parse_args() -> Result<(String, Duration), String> {
    let mut config = DEFAULT_CONFIG.to_owned();
    let mut work = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--work-ms" => {
                let millis = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--work-ms needs a number of milliseconds")?;
                work = Duration::from_millis(millis);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => config = path.to_owned(),
        }
    }
    Ok((config, work))
}
