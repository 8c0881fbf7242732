//! The RPC bench's report: what it ran on, and one row per scenario with every system's medians.

use rmif_bench::measure::Results;
use rmif_bench::options::Timing;
use rmif_bench::report::{MISSING, Table, machine, number, ratio, rustc_version};

use crate::System;
use crate::scenario::Scenario;

pub fn print_header(timing: &Timing) {
    println!("machine: {}; {}", machine(), rustc_version());
    println!(
        "{} run(s) of {:.1} s warm-up + {:.1} s measured per cell; medians across runs{}",
        timing.runs,
        timing.warmup.as_secs_f64(),
        timing.duration.as_secs_f64(),
        timing.smoke_note()
    );
    println!();
}

/// One row per scenario; systems without compression show their uncompressed figures in the
/// `-lz4` rows, with a note saying so.
pub fn print_table(scenarios: &[Scenario], results: &Results<System>) {
    let median = |system: System, scenario: &Scenario, figure: &str| {
        let cell = scenario.effective_for(system).name;
        results.median(system, &format!("{cell}/{figure}"))
    };
    let mut table = Table::new([
        "scenario",
        "rmif calls/s",
        "tarpc calls/s",
        "raw calls/s",
        "rmif/tarpc",
        "rmif/raw",
        "rmif p50/p99 µs",
        "tarpc p50/p99 µs",
        "raw p50/p99 µs",
    ]);
    for scenario in scenarios {
        let rate = |system| median(system, scenario, "rate");
        let latency = |system| match (
            median(system, scenario, "p50"),
            median(system, scenario, "p99"),
        ) {
            (Some(p50), Some(p99)) => format!("{p50:.0} / {p99:.0}"),
            _ => MISSING.to_owned(),
        };
        let name = if scenario.lz4 {
            format!("{} ¹", scenario.name)
        } else {
            scenario.name.to_owned()
        };
        let [rmif, tarpc, raw] = System::ALL;
        table.row([
            name,
            number(rate(rmif), 0),
            number(rate(tarpc), 0),
            number(rate(raw), 0),
            ratio(rate(rmif), rate(tarpc)),
            ratio(rate(rmif), rate(raw)),
            latency(rmif),
            latency(tarpc),
            latency(raw),
        ]);
    }
    print!("{table}");
    println!();
    print!("{}", cpu_table(scenarios, results));
    if scenarios.iter().any(|s| s.lz4) {
        println!();
        println!(
            "¹ lz4 on requests and responses of rmif and raw (threshold 1024 B); tarpc does not \
             compress, so its figures repeat the uncompressed row."
        );
    }
}

/// CPU time per call of each system's provider and consumer processes (both share the machine's
/// cores, so a system that spends less per call leaves more for everything else).
fn cpu_table(scenarios: &[Scenario], results: &Results<System>) -> Table {
    let mut table = Table::new([
        "scenario",
        "rmif CPU µs/call (provider / consumer)",
        "tarpc",
        "raw",
        "rmif/raw provider",
    ]);
    for scenario in scenarios {
        let figure = |system: System, side: &str| {
            let cell = scenario.effective_for(system).name;
            results.median(system, &format!("{cell}/cpu-{side}"))
        };
        let cell = |system| {
            format!(
                "{} / {}",
                number(figure(system, "provider"), 1),
                number(figure(system, "consumer"), 1)
            )
        };
        let [rmif, tarpc, raw] = System::ALL;
        table.row([
            scenario.name.to_owned(),
            cell(rmif),
            cell(tarpc),
            cell(raw),
            ratio(figure(rmif, "provider"), figure(raw, "provider")),
        ]);
    }
    table
}
