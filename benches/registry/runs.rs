//! The runs: per run and system, a fresh cluster with every chosen scenario that shares one run
//! on it, then each chosen scenario that starts a cluster of its own. A scenario that fails is
//! reported and the others still run: one system's bug should not cost the whole comparison.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use rmif_bench::measure::{Results, rotated};

use crate::client::Conn;
use crate::cluster::Cluster;
use crate::scenarios::{
    discovery, ephemeral, failover, fanout, restart, size, stall, throughput, watch,
};
use crate::servers::Servers;
use crate::{Options, Scenario, System, report};

/// Every node the scenarios work under.
const SETUP_NODES: [&str; 7] = [
    "/bench",
    "/bench/w",
    "/bench/r",
    "/bench/f",
    "/bench/watch",
    "/bench/fan",
    "/bench/eph",
];

/// Runs everything `options.timing.runs` times and prints the medians. A smoke test skips the
/// systems whose servers are not installed; a benchmark refuses to run without them.
pub fn bench(options: Options) {
    let servers = Servers::from_env(options.rmif_set.clone());
    let systems: Vec<System> = options
        .systems
        .iter()
        .copied()
        .filter(|s| match servers.available(*s) {
            Ok(()) => true,
            Err(why) if options.timing.smoke => {
                eprintln!("registry bench: skipping {}: {why}", s.name());
                false
            }
            Err(why) => {
                eprintln!("registry bench: {}: {why}", s.name());
                std::process::exit(2);
            }
        })
        .collect();
    let runtime = rmif_bench::runtime();
    report::print_header(&options.timing, &servers);
    let (own, shared): (Vec<Scenario>, Vec<Scenario>) = options
        .scenarios
        .iter()
        .partition(|scenario| scenario.own_cluster());
    let mut results = Results::new();
    let mut errors = 0;
    for run in 0..options.timing.runs {
        for system in rotated(&systems, run) {
            eprintln!("run {}/{}: {}", run + 1, options.timing.runs, system.name());
            if !shared.is_empty() {
                let run = AssertUnwindSafe(run_system(
                    system,
                    &servers,
                    &options,
                    &shared,
                    &mut results,
                ));
                match runtime.block_on(run.catch_unwind()) {
                    Ok(failed_ops) => errors += failed_ops,
                    // Setting up the cluster failed (see the panic above); the other runs go on.
                    Err(_) => {
                        results.record(system, "setup/failed", 1.0);
                        errors += 1;
                    }
                }
            }
            for &scenario in &own {
                if !measures(scenario, system) {
                    eprintln!("  {}: not measured on {}", scenario.name(), system.name());
                    continue;
                }
                eprintln!("  {}:", scenario.name());
                let run =
                    AssertUnwindSafe(run_own(system, scenario, &servers, &options, &mut results));
                if runtime.block_on(run.catch_unwind()).is_err() {
                    eprintln!(
                        "  {} FAILED on {} (see above)",
                        scenario.name(),
                        system.name()
                    );
                    results.record(system, format!("{}/failed", scenario.name()), 1.0);
                    errors += 1;
                }
            }
        }
    }
    report::print_tables(&options.scenarios, &results);
    if errors > 0 {
        eprintln!("registry bench: {errors} operations failed");
        std::process::exit(1);
    }
}

/// Whether `scenario`, one with a cluster of its own, measures `system`.
fn measures(scenario: Scenario, system: System) -> bool {
    match scenario {
        Scenario::Stall => stall::measures(system),
        Scenario::Restart => restart::measures(system),
        Scenario::Size => size::measures(system),
        _ => true,
    }
}

/// Runs `scenario`, which starts (and stops) a cluster of `system` of its own. A failure panics.
async fn run_own(
    system: System,
    scenario: Scenario,
    servers: &Servers,
    options: &Options,
    results: &mut Results<System>,
) {
    match scenario {
        Scenario::Stall => stall::run(system, servers, &options.stall, results).await,
        Scenario::Restart => restart::run(system, servers, options.restart_nodes, results).await,
        Scenario::Size => size::run(servers, &options.size, results).await,
        _ => unreachable!("{} runs on the shared cluster", scenario.name()),
    }
}

/// Starts a fresh cluster of `system`, runs `scenarios` on it, stops it. Returns the number of
/// failed operations.
async fn run_system(
    system: System,
    servers: &Servers,
    options: &Options,
    scenarios: &[Scenario],
    results: &mut Results<System>,
) -> u64 {
    let mut cluster = Cluster::start(system, servers);
    cluster.wait_ready().await;
    let mut setup = Conn::connect(system, &cluster.clients)
        .await
        .expect("setup client");
    for path in SETUP_NODES {
        setup.ensure(path).await.expect("setup node");
    }
    throughput::prime(&cluster, &options.timing).await;
    let mut errors = 0;
    for &scenario in scenarios {
        let outcome = AssertUnwindSafe(run_scenario(&mut cluster, scenario, options, results))
            .catch_unwind()
            .await;
        match outcome {
            Ok(failed_ops) => errors += failed_ops,
            Err(_) => {
                eprintln!(
                    "  {} FAILED on {} (see above)",
                    scenario.name(),
                    system.name()
                );
                results.record(system, format!("{}/failed", scenario.name()), 1.0);
                cluster.keep_files = true;
                errors += 1;
            }
        }
    }
    errors
}

/// Runs one scenario; returns the number of failed operations (a scenario that cannot go on
/// panics).
async fn run_scenario(
    cluster: &mut Cluster,
    scenario: Scenario,
    options: &Options,
    results: &mut Results<System>,
) -> u64 {
    // Leadership may have moved under load: the watch scenarios want the current followers.
    let leader = cluster.wait_ready().await;
    match scenario {
        Scenario::Writes | Scenario::Reads => {
            return throughput::run(cluster, scenario, &options.timing, results).await;
        }
        Scenario::Watch => watch::run(cluster, leader, options.samples, results).await,
        Scenario::Fanout => fanout::run(cluster, leader, options.fanout_changes, results).await,
        Scenario::Discovery => discovery::run(cluster, leader, &options.discovery, results).await,
        Scenario::Ephemeral => ephemeral::run(cluster, leader, options.ephemerals, results).await,
        Scenario::Failover => failover::run(cluster, options.kills, results).await,
        Scenario::Stall | Scenario::Restart | Scenario::Size => {
            unreachable!("{} starts a cluster of its own", scenario.name())
        }
    }
    0
}
