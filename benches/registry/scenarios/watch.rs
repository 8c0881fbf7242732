//! Watch notification latency (`--scenario watch`): a writer on one follower sets a node, and a
//! watcher on the other follower times each notification from the moment the write was issued.

use std::time::Instant;

use rmif_bench::measure::{Latencies, Results, Unit};

use crate::client::Conn;
use crate::cluster::{Cluster, followers};
use crate::system::Change;
use crate::{HANG, System};

/// The names of its figures.
pub const P50: &str = "watch/p50";
pub const P99: &str = "watch/p99";

/// Times `samples` notifications and records their p50 and p99, in ms.
pub async fn run(cluster: &Cluster, leader: usize, samples: usize, results: &mut Results<System>) {
    let latencies = watch_latency(cluster, leader, samples).await;
    let p50 = Unit::Millis.of(latencies.quantile(0.50));
    let p99 = Unit::Millis.of(latencies.quantile(0.99));
    eprintln!("  watch          p50 {p50:>7.2} ms  p99 {p99:>7.2} ms");
    results.record(cluster.system, P50, p50);
    results.record(cluster.system, P99, p99);
}

async fn watch_latency(cluster: &Cluster, leader: usize, samples: usize) -> Latencies {
    let (writer_member, watcher_member) = followers(leader);
    let mut writer = Conn::to(cluster.system, cluster.clients[writer_member])
        .await
        .expect("writer");
    let mut watch = Conn::to(cluster.system, cluster.clients[watcher_member])
        .await
        .expect("watcher")
        .watch("/bench/watch")
        .await
        .expect("arm the watch");
    let mut latencies = Latencies::new();
    for i in 0..samples {
        let value = format!("{i:032}");
        let start = Instant::now();
        let (written, seen) = tokio::join!(
            writer.set("/bench/watch", value.as_bytes()),
            tokio::time::timeout(HANG, watch.next_change())
        );
        written.expect("watched write");
        let seen = seen.unwrap_or_else(|_| panic!("no notification within {HANG:?}"));
        assert_eq!(seen, Ok(Change::Updated), "unexpected notification");
        latencies.record(start.elapsed());
    }
    latencies
}
