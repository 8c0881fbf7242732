//! Calls the calculator.
//!
//! ```text
//! cargo run --example calculator_consumer [CONFIG] [--calls N] [--concurrency C]
//! ```
//!
//! Providers come from the registry in `Config_center_url` if the file sets it, else from
//! `Provider_addresses`. Without `--calls` it shows one call of each kind. With `--calls N` it makes N `add` calls
//! (C at a time, 32 by default) and checks every answer. Either way the last line is
//! `calls=N ok=K failed=F`; the exit code is non-zero if any call failed.

use std::process::ExitCode;
use std::sync::Arc;

use rmif_core::RpcConfig;
use rmif_registry::discovery::consumer_client;
use rmif_suite::calculator::{CalcError, Calculator, CalculatorConsumer};

const DEFAULT_CONFIG: &str = "examples/calculator.properties";

struct Options {
    config: String,
    calls: Option<u64>,
    concurrency: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        config: DEFAULT_CONFIG.to_owned(),
        calls: None,
        concurrency: 32,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} needs a positive number"))
        };
        match arg.as_str() {
            "--calls" => options.calls = Some(number("--calls")?),
            "--concurrency" => options.concurrency = number("--concurrency")?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => options.config = path.to_owned(),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    rmif_suite::init_logging();
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("calculator_consumer: {error}");
            eprintln!("usage: calculator_consumer [CONFIG] [--calls N] [--concurrency C]");
            return ExitCode::from(2);
        }
    };
    let config = match RpcConfig::load(&options.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("calculator_consumer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let client = match consumer_client(&config) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("calculator_consumer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let calculator = Arc::new(CalculatorConsumer::new(&client));
    let (calls, ok) = match options.calls {
        None => show_each_kind(calculator).await,
        Some(calls) => add_many(calculator, calls, options.concurrency).await,
    };
    println!("calls={calls} ok={ok} failed={}", calls - ok);
    if ok == calls {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One call of each kind, printed; the division by zero is expected to fail with the
/// application's own error.
async fn show_each_kind(calculator: Arc<impl Calculator>) -> (u64, u64) {
    let mut ok = 0;
    match calculator.add(40, 2).await {
        Ok(sum) => {
            println!("add(40, 2) = {sum}");
            ok += 1;
        }
        Err(error) => println!("add(40, 2) failed: {error}"),
    }
    match calculator.div(1, 0).await {
        Err(CalcError::DivisionByZero) => {
            println!("div(1, 0) = error: division by zero (as expected)");
            ok += 1;
        }
        other => println!("div(1, 0) gave {other:?}, expected the division-by-zero error"),
    }
    match calculator.echo(b"hello, rmif".to_vec()).await {
        Ok(body) => {
            println!("echo = {:?}", String::from_utf8_lossy(&body));
            ok += 1;
        }
        Err(error) => println!("echo failed: {error}"),
    }
    (3, ok)
}

/// `calls` additions, `concurrency` at a time, each answer checked.
async fn add_many(
    calculator: Arc<impl Calculator + 'static>,
    calls: u64,
    concurrency: u64,
) -> (u64, u64) {
    let workers = concurrency.min(calls);
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let calculator = calculator.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                let mut first_error = None;
                let mut i = worker;
                while i < calls {
                    match calculator.add(i, 1).await {
                        Ok(sum) if sum == i + 1 => ok += 1,
                        Ok(sum) => {
                            first_error.get_or_insert(format!("add({i}, 1) = {sum}"));
                        }
                        Err(error) => {
                            first_error.get_or_insert(error.to_string());
                        }
                    }
                    i += workers;
                }
                (ok, first_error)
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if let Ok((worker_ok, first_error)) = task.await {
            ok += worker_ok;
            if let Some(error) = first_error {
                eprintln!("calculator_consumer: a call failed: {error}");
            }
        }
    }
    (calls, ok)
}
