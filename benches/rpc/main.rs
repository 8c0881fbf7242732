//! RPC throughput and latency on loopback: rmif against tarpc and against a hand-written
//! pipelined protocol over raw framed TCP (the "how fast could this be" floor).
//!
//! ```text
//! cargo bench -p rmif-bench --bench rpc [-- OPTIONS]
//!     --runs N            repeat the whole matrix N times, report medians (default 3)
//!     --duration S        seconds measured per cell (default 3), after --warmup S (default 1)
//!     --only SYSTEM       rmif, tarpc or raw (repeatable)
//!     --scenario NAME     add-1, add-16, add-256, echo-1k[-lz4], echo-64k[-lz4|-bytes],
//!                         add-await-1, add-await-16, add-await-256, add-lock-1,
//!                         add-lock-16, add-lock-256, chain-1, chain-16, chain-256,
//!                         add-await-100x4 (repeatable)
//!     --help              these options
//! ```
//!
//! Every system serves the same two calls, `add(u64, u64) -> u64` and `echo(Vec<u8>) -> Vec<u8>`,
//! from a separate provider process: this binary re-executes itself with `--serve SYSTEM`, and that
//! child prints its address on its first line of stdout and exits when its stdin closes. The
//! parent makes ONE client (one TCP connection) per measurement (but in `add-await-100x4`) and
//! shares it among N caller tasks, each looping call-after-call. Every call's latency goes into
//! a histogram.
//!
//! For each (scenario, system) the load runs ~1 s of warm-up and then `--duration` seconds
//! (default 3) of measurement; the whole matrix is repeated `--runs` times (default 3), the
//! systems' order rotating between runs, and the table shows the median of each figure.
//!
//! In the `add-await` scenarios every system's `add` handler sends its numbers to a task of the
//! provider process and awaits the answer (see `backend`): it is pending on its first poll and
//! woken from another task, as a handler awaiting a database or another service is. raw then
//! spawns a task per request and sends the answers through one writer task (tarpc spawns per
//! request in every scenario). `add-await-100x4` makes 100 clients (connections) with 4 callers
//! each. In the `add-lock` scenarios the handler takes an async mutex shared by all calls and
//! holds it while it awaits the backend task, so that calls queue on it. In the `chain` scenarios `add`'s handler calls a second provider
//! of the same system in the provider process (consumer → A → B) through that system's client.
//!
//! In the `-lz4` scenarios rmif and raw compress bodies of 1 KiB and more with the same lz4 block
//! codec (raw as the floor of that work); tarpc has no compression, so it is not measured again
//! and the table repeats its uncompressed figures. Echo bodies are JSON-like ASCII text, which lz4
//! shrinks.
//! tarpc runs as shipped: `serde_transport::tcp` leaves Nagle's algorithm on, which on this
//! workload is faster for tarpc than TCP_NODELAY (rmif and raw set TCP_NODELAY).
//!
//! Run without `--bench` (as `cargo test --benches` does) the binary only smoke-tests every pair
//! for a fraction of a second.

mod backend;
mod caller;
mod load;
mod provider;
mod raw;
mod report;
mod rmif;
mod scenario;
mod tarpc;

use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
use rmif_bench::measure::{Results, Unit, rotated};
use rmif_bench::options::{RunArgs, Timing, selected};

use scenario::{SCENARIOS, Scenario};

/// Generous enough that no call in a benchmark ever times out, for rmif and tarpc alike.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
enum System {
    Rmif,
    Tarpc,
    Raw,
}

impl System {
    /// In table order.
    const ALL: [System; 3] = [System::Rmif, System::Tarpc, System::Raw];

    fn name(self) -> &'static str {
        match self {
            System::Rmif => "rmif",
            System::Tarpc => "tarpc",
            System::Raw => "raw",
        }
    }

    /// tarpc has no compression; raw compresses with rmif's codec, as the floor of the same work.
    fn compresses(self) -> bool {
        self != System::Tarpc
    }
}

/// RPC throughput and latency on loopback: rmif vs tarpc vs raw framed TCP.
#[derive(Parser)]
#[command(name = "rpc")]
struct Cli {
    #[command(flatten)]
    run: RunArgs,

    /// Measure this system only (repeatable)
    #[arg(long = "only", value_name = "SYSTEM")]
    systems: Vec<System>,

    /// Run this scenario only (repeatable)
    #[arg(long = "scenario", value_name = "NAME", value_parser = scenario_name())]
    scenarios: Vec<Scenario>,

    /// Be the provider process of SYSTEM (the bench runs itself so)
    #[arg(long, value_name = "SYSTEM", hide = true)]
    serve: Option<System>,

    /// With --serve: compress as the -lz4 scenarios do
    #[arg(long, hide = true, requires = "serve")]
    lz4: bool,

    /// With --serve: what `add` handlers do before answering
    #[arg(long, hide = true, requires = "serve", default_value = "immediate")]
    handler: scenario::Handler,
}

/// `--scenario`'s values: the scenarios' names.
fn scenario_name() -> impl TypedValueParser<Value = Scenario> {
    PossibleValuesParser::new(SCENARIOS.map(|s| s.name)).map(|name| {
        SCENARIOS
            .into_iter()
            .find(|s| s.name == name)
            .expect("a possible value")
    })
}

/// What to measure.
struct Options {
    timing: Timing,
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
}

fn main() {
    let cli = Cli::parse();
    match cli.serve {
        Some(system) => provider::serve(
            system,
            provider::Serving {
                lz4: cli.lz4,
                handler: cli.handler,
            },
        ),
        None => bench(Options {
            timing: cli.run.timing(Duration::from_millis(200)),
            systems: selected(&System::ALL, &cli.systems),
            scenarios: selected(&SCENARIOS, &cli.scenarios),
        }),
    }
}

/// Runs the matrix `runs` times and prints the medians.
fn bench(options: Options) {
    let runtime = rmif_bench::runtime();
    report::print_header(&options.timing);
    let timing = options.timing;
    let mut results = Results::new();
    let mut failed_calls = 0;
    let jobs = scenario::jobs(&options.scenarios, &options.systems);
    for run in 0..timing.runs {
        for (scenario, systems) in &jobs {
            let scenario = *scenario;
            for system in rotated(systems, run) {
                let cell = runtime.block_on(load::measure(system, scenario, &timing));
                let sample = cell.sample;
                eprintln!(
                    "run {}/{} {:<15} {:<5} {:>10.0} calls/s  p50 {:>8.1} µs  p99 {:>8.1} µs  \
                     CPU per call {:.1} µs provider, {:.1} µs consumer",
                    run + 1,
                    timing.runs,
                    scenario.name,
                    system.name(),
                    sample.per_sec,
                    Unit::Micros.of(sample.p50),
                    Unit::Micros.of(sample.p99),
                    cell.provider_cpu_us,
                    cell.consumer_cpu_us,
                );
                results.record_sample(system, scenario.name, &sample, Unit::Micros);
                let cpu = |side| format!("{}/cpu-{side}", scenario.name);
                results.record(system, cpu("provider"), cell.provider_cpu_us);
                results.record(system, cpu("consumer"), cell.consumer_cpu_us);
                failed_calls += sample.errors;
            }
        }
    }
    report::print_table(&options.scenarios, &results);
    if failed_calls > 0 {
        eprintln!("rpc bench: {failed_calls} calls failed");
        std::process::exit(1);
    }
}
