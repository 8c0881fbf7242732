//! Fan-out (`--scenario fanout`): many watchers of one node, several per connection,
//! connections spread over the members, all armed first; the time from issuing one write until
//! the last watcher saw it.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rmif_bench::measure::Results;
use tokio::sync::mpsc;

use crate::client::Conn;
use crate::cluster::{Cluster, followers};
use crate::system::Change;
use crate::{HANG, System};

/// Watcher counts, and watchers per client connection.
pub const FANOUT: [usize; 2] = [200, 1000];
const WATCHERS_PER_CONNECTION: usize = 10;

/// The name of the figure with `watchers` watchers.
pub fn metric(watchers: usize) -> String {
    format!("fanout/{watchers}")
}

/// Times `changes` changes at each watcher count and records every one, in ms.
pub async fn run(cluster: &Cluster, leader: usize, changes: usize, results: &mut Results<System>) {
    for watchers in FANOUT {
        let times = fanout(cluster, leader, watchers, changes).await;
        eprintln!("  fanout/{watchers:<7} {times:.1?} ms");
        for time in times {
            results.record(cluster.system, metric(watchers), time);
        }
    }
}

/// `watchers` watchers of `/bench/fan`, 10 per connection, connections spread over the members,
/// all armed before the first change. Returns how long each change took to reach every watcher.
async fn fanout(cluster: &Cluster, leader: usize, watchers: usize, changes: usize) -> Vec<f64> {
    let connections = watchers.div_ceil(WATCHERS_PER_CONNECTION);
    let conns: Vec<Conn> =
        join_all((0..connections).map(|i| Conn::to(cluster.system, cluster.clients[i % 3])))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("watcher connections");
    // Arm every watcher, a connection's watches one after another, connections concurrently.
    let armed = join_all(conns.iter().enumerate().map(|(c, conn)| {
        let count = (watchers - c).div_ceil(connections);
        let conn = conn.clone();
        async move {
            let mut watches = Vec::new();
            for _ in 0..count {
                watches.push(conn.clone().watch("/bench/fan").await?);
            }
            Ok::<_, String>(watches)
        }
    }))
    .await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (id, mut watch) in armed
        .into_iter()
        .flat_map(|w| w.expect("arm a watcher"))
        .enumerate()
    {
        let seen_tx = seen_tx.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0.. {
                let change = watch.next_change().await;
                let _ = seen_tx.send((id, round, change, Instant::now()));
            }
        }));
    }
    assert_eq!(tasks.len(), watchers);
    let mut writer = Conn::to(cluster.system, cluster.clients[followers(leader).0])
        .await
        .expect("writer");
    let mut times = Vec::new();
    for round in 0..changes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        writer
            .set("/bench/fan", format!("{round:032}").as_bytes())
            .await
            .expect("fan-out write");
        let mut last = start;
        for _ in 0..watchers {
            let (id, seen_round, change, at) = tokio::time::timeout(HANG, seen.recv())
                .await
                .unwrap_or_else(|_| panic!("not every watcher was notified within {HANG:?}"))
                .expect("watcher tasks alive");
            assert_eq!(
                (seen_round, change),
                (round, Ok(Change::Updated)),
                "watcher {id} saw something else"
            );
            last = last.max(at);
        }
        times.push((last - start).as_secs_f64() * 1000.0);
    }
    for task in tasks {
        task.abort();
    }
    times
}
