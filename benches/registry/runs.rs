//! The runs: per run and system, a fresh cluster with every chosen scenario run on it. A
//! scenario that fails is reported and the others still run: one system's bug should not cost
//! the whole comparison.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use rmif_bench::measure::{Results, rotated};

use crate::client::Conn;
use crate::cluster::Cluster;
use crate::scenarios::{discovery, ephemeral, failover, fanout, throughput, watch};
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
    let mut results = Results::new();
    let mut errors = 0;
    for run in 0..options.timing.runs {
        for system in rotated(&systems, run) {
            eprintln!("run {}/{}: {}", run + 1, options.timing.runs, system.name());
            let run = AssertUnwindSafe(run_system(system, &servers, &options, &mut results));
            match runtime.block_on(run.catch_unwind()) {
                Ok(failed_ops) => errors += failed_ops,
                // Setting up the cluster failed (see the panic above); the other runs go on.
                Err(_) => {
                    results.record(system, "setup/failed", 1.0);
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

/// Starts a fresh cluster of `system`, runs every scenario on it, stops it. Returns the number
/// of failed operations.
async fn run_system(
    system: System,
    servers: &Servers,
    options: &Options,
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
    for &scenario in &options.scenarios {
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
    }
    0
}
