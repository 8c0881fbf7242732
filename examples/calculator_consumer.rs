//! Calls the calculator.
//!
//! ```text
//! cargo run --example calculator_consumer [CONFIG] [--calls N | --duration S] [--concurrency C]
//! ```
//!
//! Providers come from the registry in `Config_center_url` if the file sets it, else from
//! `Provider_addresses`. Without `--calls` or `--duration` it shows one call of each kind. With
//! `--calls N` it makes N `add` calls, with `--duration S` it makes them for S seconds (C at a
//! time, 32 by default), checking every answer; Ctrl-C or SIGTERM ends the run early. Either
//! way the last line is `calls=N ok=K failed=F`; the exit code is non-zero if any call failed.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rmif_registry::App;
use rmif_suite::calculator::{CalcError, Calculator, CalculatorConsumer};
use tokio::time::Instant;

const DEFAULT_CONFIG: &str = "examples/calculator.properties";
const USAGE: &str =
    "usage: calculator_consumer [CONFIG] [--calls N | --duration S] [--concurrency C]";

/// How many calls to make.
enum Run {
    /// One of each kind, printed.
    Show,
    /// This many additions.
    Calls(u64),
    /// Additions until this much time has passed.
    For(Duration),
}

struct Options {
    config: String,
    run: Run,
    concurrency: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        config: DEFAULT_CONFIG.to_owned(),
        run: Run::Show,
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
            "--calls" => options.run = Run::Calls(number("--calls")?),
            "--duration" => options.run = Run::For(Duration::from_secs(number("--duration")?)),
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
            eprintln!("calculator_consumer: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = match App::from_file(&options.config) {
        Ok(app) => app.start().await,
        Err(error) => Err(error),
    };
    let app = match started {
        Ok(app) => app,
        Err(error) => {
            eprintln!("calculator_consumer: {}", rmif_suite::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let calculator: CalculatorConsumer = match app.stub() {
        Ok(stub) => stub,
        Err(error) => {
            eprintln!("calculator_consumer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (calls, ok) = match options.run {
        Run::Show => show_each_kind(&calculator).await,
        Run::Calls(calls) => add_many(calculator, Some(calls), None, options.concurrency).await,
        Run::For(time) => add_many(calculator, None, Some(time), options.concurrency).await,
    };
    println!("calls={calls} ok={ok} failed={}", calls - ok);
    // Leave the registry's consumer map before exiting.
    app.shutdown().await;
    if ok == calls {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One call of each kind, printed; the division by zero is expected to fail with the
/// application's own error.
async fn show_each_kind(calculator: &impl Calculator) -> (u64, u64) {
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

/// Additions, `concurrency` at a time, each answer checked: `limit` of them, or as many as fit
/// in `time`, or until Ctrl-C or SIGTERM.
async fn add_many(
    calculator: CalculatorConsumer,
    limit: Option<u64>,
    time: Option<Duration>,
    concurrency: u64,
) -> (u64, u64) {
    let workers = limit.map_or(concurrency, |limit| concurrency.min(limit));
    let deadline = time.map(|time| Instant::now() + time);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let calculator = calculator.clone();
            let (stop, next) = (stop.clone(), next.clone());
            tokio::spawn(async move {
                let (mut calls, mut ok) = (0u64, 0u64);
                let mut first_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
                    if stop.load(Ordering::Relaxed) || limit.is_some_and(|l| i >= l) || out_of_time
                    {
                        break;
                    }
                    calls += 1;
                    match calculator.add(i, 1).await {
                        Ok(sum) if sum == i + 1 => ok += 1,
                        Ok(sum) => {
                            first_error.get_or_insert(format!("add({i}, 1) = {sum}"));
                        }
                        Err(error) => {
                            first_error.get_or_insert(error.to_string());
                        }
                    }
                }
                (calls, ok, first_error)
            })
        })
        .collect();
    let finished = futures_util::future::join_all(tasks);
    tokio::pin!(finished);
    let results = tokio::select! {
        results = &mut finished => results,
        () = rmif_core::shutdown_signal() => {
            // Calls in flight finish; no new one starts.
            stop.store(true, Ordering::Relaxed);
            finished.await
        }
    };
    let (mut calls, mut ok) = (0, 0);
    for (worker_calls, worker_ok, first_error) in results.into_iter().flatten() {
        calls += worker_calls;
        ok += worker_ok;
        if let Some(error) = first_error {
            eprintln!("calculator_consumer: a call failed: {error}");
        }
    }
    (calls, ok)
}
