//! Writes and reads (`--scenario writes`, `reads`): clients each with their own connection, each
//! looping one operation; operations per second, p50 and p99.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rmif_bench::measure::{Results, Sample, Tally, Unit, Window};
use rmif_bench::options::Timing;

use crate::client::Conn;
use crate::cluster::Cluster;
use crate::scenarios::load;
use crate::{Scenario, System, VALUE};

/// Client counts of the throughput scenarios.
pub const CLIENTS: [usize; 2] = [16, 64];

/// What each client does in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Creates new nodes with a 32-byte value.
    Create,
    /// Reads one 32-byte node.
    Read { linearizable: bool },
}

impl Load {
    /// The loads of a throughput scenario, in table order.
    pub fn of(scenario: Scenario) -> &'static [Load] {
        match scenario {
            Scenario::Writes => &[Load::Create],
            Scenario::Reads => &[
                Load::Read { linearizable: true },
                Load::Read {
                    linearizable: false,
                },
            ],
            _ => &[],
        }
    }

    /// The name of this load's figures with `clients` clients, e.g. `linread/64`.
    pub fn key(self, clients: usize) -> String {
        let name = match self {
            Load::Create => "write",
            Load::Read { linearizable: true } => "linread",
            Load::Read {
                linearizable: false,
            } => "staleread",
        };
        format!("{name}/{clients}")
    }

    /// What the report calls it.
    pub fn label(self) -> &'static str {
        match self {
            Load::Create => "create (write)",
            Load::Read { linearizable: true } => "linearizable read",
            Load::Read {
                linearizable: false,
            } => "local read",
        }
    }
}

/// Runs every load of `scenario` at every client count; returns the number of failed operations.
pub async fn run(
    cluster: &Cluster,
    scenario: Scenario,
    timing: &Timing,
    results: &mut Results<System>,
) -> u64 {
    let mut errors = 0;
    for &load in Load::of(scenario) {
        for clients in CLIENTS {
            let sample = throughput(cluster, load, clients, timing).await;
            let key = load.key(clients);
            eprintln!(
                "  {:<14} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                key,
                sample.per_sec,
                Unit::Millis.of(sample.p50),
                Unit::Millis.of(sample.p99)
            );
            results.record_sample(cluster.system, &key, &sample, Unit::Millis);
            errors += sample.errors;
        }
    }
    errors
}

/// Untimed load before the first measurement, so that no system is measured cold (the JVM's
/// JIT compiler, connection pools, the servers' first allocations).
pub async fn prime(cluster: &Cluster, timing: &Timing) {
    for load in [Load::Create, Load::Read { linearizable: true }] {
        throughput(cluster, load, CLIENTS[0], timing).await;
    }
}

/// Throughput cells started so far.
static CELLS: AtomicU64 = AtomicU64::new(0);

/// `clients` clients, client i on member i mod 3, each looping `load` for the warm-up and the
/// measured window. Connections are made before the clock starts.
async fn throughput(cluster: &Cluster, load: Load, clients: usize, timing: &Timing) -> Sample {
    let conns = load::connections(cluster, clients).await;
    // Node names are unique across cells (and runs, which use fresh clusters anyway).
    let cell = CELLS.fetch_add(1, Ordering::Relaxed);
    let window = Window::after(timing.warmup, timing.duration);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(client_loop(conn, load, format!("{cell}-{i}"), window)))
        .collect();
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await.expect("client task panicked"));
    }
    if let Some(failures) = tally.failures("operations") {
        eprintln!("    {failures}");
    }
    tally.sample(&window)
}

/// One client: `load` after `load` until the window closes, checking what reads return.
async fn client_loop(mut conn: Conn, load: Load, name: String, window: Window) -> Tally {
    let mut tally = Tally::new();
    let mut seq = 0u64;
    loop {
        let start = Instant::now();
        if window.is_over(start) {
            return tally;
        }
        seq += 1;
        let outcome = match load {
            Load::Create => conn.create(&format!("/bench/w/{name}-{seq}"), VALUE).await,
            Load::Read { linearizable } => {
                conn.read("/bench/r", linearizable).await.and_then(|value| {
                    (value == VALUE)
                        .then_some(())
                        .ok_or("read a wrong value".to_owned())
                })
            }
        };
        tally.record(&window, start, outcome);
    }
}
