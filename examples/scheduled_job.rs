//! A scheduled task that must run on exactly one node: three processes register the same
//! report every 300 ms; only one runs each tick. The running process is killed with SIGKILL;
//! once the registry expires its session, another process runs the following ticks (those that
//! fell in between are skipped). Every tick is recorded with compare-and-set before it runs, so
//! none runs twice.
//!
//! `cargo run --example scheduled_job` (an embedded registry), or
//! `cargo run --example scheduled_job -- 127.0.0.1:7000` (a running one).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rmif_registry::RegistryClient;
use rmif_registry::recipes::schedule::Schedule;
use rmif_suite::ExampleRegistry;

/// Ticks to watch before the example ends.
const TICKS: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rmif_suite::init_logging();
    if let Some((name, client)) = rmif_suite::worker_role()? {
        return node(&name, client).await;
    }

    let registry = ExampleRegistry::from_args().await?;
    // Every node's output lines, as (node, tick).
    let (lines, ran) = mpsc::channel::<(String, u64)>();
    let mut nodes: BTreeMap<String, Child> = BTreeMap::new();
    for name in ["node-1", "node-2", "node-3"] {
        let mut child = registry
            .worker_command(name)?
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let lines = lines.clone();
        let node = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(tick) = line.strip_prefix("ran tick ").and_then(|t| t.parse().ok()) {
                    let _ = lines.send((node.clone(), tick));
                }
            }
        });
        nodes.insert(name.to_owned(), child);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut killed = None;
    while seen.len() < TICKS {
        let (node, tick) =
            tokio::task::block_in_place(|| ran.recv_timeout(Duration::from_secs(20)))?;
        println!("{node}      ran the report for tick {tick}");
        seen.push((node.clone(), tick));
        if seen.len() == 3 && killed.is_none() {
            let child = nodes.get_mut(&node).ok_or("unknown node")?;
            child.kill()?;
            child.wait()?;
            println!("{node}      killed with SIGKILL");
            killed = Some(node);
        }
    }
    for child in nodes.values_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut ticks: Vec<u64> = seen.iter().map(|(_, tick)| *tick).collect();
    ticks.dedup();
    if ticks.len() != seen.len() {
        return Err("a tick ran twice".into());
    }
    println!("{TICKS} ticks, each run once, on one node at a time");
    Ok(())
}

/// One node: registers the report and prints each tick it runs.
async fn node(name: &str, client: RegistryClient) -> Result<(), Box<dyn std::error::Error>> {
    let _job = Schedule::every(Duration::from_millis(300))
        .session_timeout(Duration::from_secs(2))
        .start(client, "hourly-report", name, |tick| async move {
            println!("ran tick {tick}");
        });
    std::future::pending::<()>().await;
    Ok(())
}
