//! Failover (`--scenario failover`): writers whose clients know every member write
//! continuously; the leader is SIGKILLed; the longest interval without any successful write is
//! the gap. The killed member is restarted (same data) and the cluster settles before the next
//! kill.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmif_bench::measure::Results;

use crate::client::Conn;
use crate::cluster::Cluster;
use crate::{HANG, System, VALUE};

/// Writers, and how long they write before the kill.
const FAILOVER_WRITERS: usize = 6;
const FAILOVER_STEADY: Duration = Duration::from_millis(1500);

/// The name of its figure.
pub const METRIC: &str = "failover";

/// Kills the leader `kills` times and records each kill's longest write gap, in ms.
pub async fn run(cluster: &mut Cluster, kills: usize, results: &mut Results<System>) {
    for gap in failover(cluster, kills).await {
        results.record(cluster.system, METRIC, gap);
    }
}

/// A writer's client of every member, with a 250 ms deadline per request where the client has
/// one (rmif, etcd), so that a write lost with the leader is given up and sent again soon. Without
/// it an etcd write caught by the leader's death waits for etcd's own request timeout (7 s with
/// default settings), and the gap would measure that timeout rather than the election; with 1 s
/// deadlines, every etcd gap came out at exactly two deadlines. ZooKeeper's client has no
/// per-request deadline; its requests fail as soon as the member they went to drops its clients
/// (as a follower does when it loses its leader).
async fn failover_client(system: System, members: &[SocketAddr]) -> Result<Conn, String> {
    Conn::with_request_deadline(system, members, Duration::from_millis(250)).await
}

/// One writer of the failover scenario: creates nodes until `stop`, recording when each
/// successful write completed. A client that cannot be used any more is replaced.
async fn failover_writer(
    system: System,
    members: Vec<SocketAddr>,
    name: String,
    stop: Arc<AtomicBool>,
    successes: Arc<Mutex<Vec<Instant>>>,
) -> Option<String> {
    let mut conn = failover_client(system, &members).await.ok();
    let mut first_error = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = conn.as_mut().filter(|c| c.usable()) else {
            conn = failover_client(system, &members).await.ok();
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        seq += 1;
        match client
            .create(&format!("/bench/f/{name}-{seq}"), VALUE)
            .await
        {
            Ok(()) => successes.lock().unwrap().push(Instant::now()),
            Err(error) => {
                first_error.get_or_insert(error);
                // Immediate refusals would otherwise spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    first_error
}

/// Kills the leader `kills` times; returns each kill's longest write gap, in ms.
async fn failover(cluster: &mut Cluster, kills: usize) -> Vec<f64> {
    let mut gaps = Vec::new();
    for kill in 0..kills {
        let leader = cluster.wait_ready().await;
        let stop = Arc::new(AtomicBool::new(false));
        let successes = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..FAILOVER_WRITERS)
            .map(|w| {
                // Every writer knows every member; writer w starts with member w mod 3.
                let mut members = cluster.clients.clone();
                members.rotate_left(w % 3);
                tokio::spawn(failover_writer(
                    cluster.system,
                    members,
                    format!("{kill}-{w}"),
                    stop.clone(),
                    successes.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(FAILOVER_STEADY).await;
        let killed = Instant::now();
        cluster.kill(leader);
        // Writes completing just after the kill may still be the old leader's: recovery is a
        // new leader, then a successful write after it, then one more second of writing.
        let recovered = tokio::time::timeout(HANG, async {
            let new_leader = cluster.wait_ready().await;
            let elected = Instant::now();
            while successes
                .lock()
                .unwrap()
                .last()
                .is_none_or(|at| *at < elected)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            new_leader
        })
        .await
        .is_ok();
        if recovered {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let stopped = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for writer in writers {
            errors.extend(writer.await.expect("writer task"));
        }
        let mut times = successes.lock().unwrap().clone();
        times.sort();
        let gap = if recovered {
            longest_gap(&times, killed, stopped)
        } else {
            HANG
        };
        eprintln!(
            "    kill {}: leader was member {}, longest gap {:.0} ms ({} writers saw errors, e.g. {:?})",
            kill + 1,
            leader + 1,
            gap.as_secs_f64() * 1000.0,
            errors.len(),
            errors.first()
        );
        gaps.push(gap.as_secs_f64() * 1000.0);
        cluster.spawn(leader);
        cluster.wait_ready().await;
    }
    gaps
}

/// The longest interval without a successful write between the last success before `killed`
/// and `stopped`.
fn longest_gap(times: &[Instant], killed: Instant, stopped: Instant) -> Duration {
    let mut previous = times
        .iter()
        .rev()
        .find(|t| **t <= killed)
        .copied()
        .unwrap_or(killed);
    let mut longest = Duration::ZERO;
    let after = times
        .iter()
        .copied()
        .filter(|t| *t > killed && *t <= stopped);
    for at in after.chain([stopped]) {
        longest = longest.max(at - previous);
        previous = at;
    }
    longest
}
