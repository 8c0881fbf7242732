//! The registry cluster the tests use (members in the test process; the `rmif` program under
//! test runs as a process of its own), and the `rmif` invocations the tests make.

use std::process::{Command, Output};
use std::time::Duration;

use rmif_registry::Watcher;
use rmif_registry::api::WatchMessage;
use tokio::time::Instant;

pub use rmif_testkit::local::LocalCluster as Cluster;

/// Runs `rmif --servers … --timeout 3000 ARGS` to completion, off the runtime's threads (the
/// members it talks to run on them).
pub async fn rmif(cluster: &Cluster, args: &[&str]) -> Output {
    let servers = cluster.servers_arg();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rmif"))
            .args(["--servers", &servers, "--timeout", "3000"])
            .args(&args)
            .output()
            .expect("run rmif")
    })
    .await
    .expect("the rmif runner")
}

/// The next non-armed message, failing after `limit`.
pub async fn next_change(watcher: &mut Watcher, limit: Duration) -> WatchMessage {
    let deadline = Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, watcher.next())
            .await
            .expect("a watch message within the limit")
            .expect("the watch is still open")
            .expect("no watch error");
        if !message.is_armed() {
            return message;
        }
    }
}
