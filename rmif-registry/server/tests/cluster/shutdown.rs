//! SIGTERM stops a member within a bound while many clients load it (writers, sessions,
//! watches), leader or follower, with exit status 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmif_registry::CreateMode;
use rmif_registry::api::WatchMode;
use rmif_testkit::{Cluster, Settings};

use crate::load::{Tally, WRITERS, write_until};

const EPHEMERAL: CreateMode = CreateMode {
    ephemeral: true,
    sequential: false,
};

/// Load on a cluster: writers spread over every member, sessions with an ephemeral node each,
/// and watches of the whole tree.
struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Tally>>,
    _sessions: Vec<rmif_registry::Session>,
    _watchers: Vec<rmif_registry::Watcher>,
}

impl Load {
    async fn start(cluster: &Cluster) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let servers = cluster.servers();
        let writers = (0..WRITERS)
            .map(|w| {
                let client = cluster.client();
                client.prefer(servers[w % servers.len()]);
                tokio::spawn(write_until(client, format!("w{w}"), stop.clone()))
            })
            .collect();
        let mut sessions = Vec::new();
        for s in 0..16 {
            let client = cluster.client();
            client.prefer(servers[s % servers.len()]);
            let session = client.open_session(Duration::from_secs(5)).await.unwrap();
            session
                .create(&format!("/s{s}"), b"", EPHEMERAL)
                .await
                .unwrap();
            sessions.push(session);
        }
        let mut watchers = Vec::new();
        for w in 0..8 {
            let client = cluster.client();
            client.prefer(servers[w % servers.len()]);
            watchers.push(client.watch("/", WatchMode::Recursive).await.unwrap());
        }
        Load {
            stop,
            writers,
            _sessions: sessions,
            _watchers: watchers,
        }
    }

    async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for writer in self.writers {
            total.add(writer.await.unwrap());
        }
        total
    }
}

/// How long a member may take to exit after SIGTERM (docs/OPERATIONS.md, "Stopping a member").
const STOP_BOUND: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_loaded_leader_and_follower_within_the_bound() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let load = Load::start(&cluster).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let (status, took) = cluster.terminate_within(leader, STOP_BOUND * 2).await;
    eprintln!("leader {leader} exited {took:?} after SIGTERM");
    assert!(status.success(), "leader {leader} exited with {status}");
    assert!(
        took <= STOP_BOUND,
        "leader {leader} took {took:?} to exit after SIGTERM"
    );

    // The other two go on (a quorum), and one of them is stopped the same way under the load.
    let next = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = (1..=3).find(|id| *id != leader && *id != next).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, took) = cluster.terminate_within(follower, STOP_BOUND * 2).await;
    eprintln!("follower {follower} exited {took:?} after SIGTERM");
    assert!(status.success(), "follower {follower} exited with {status}");
    assert!(
        took <= STOP_BOUND,
        "follower {follower} took {took:?} to exit after SIGTERM"
    );

    let tally = load.stop().await;
    assert!(tally.written > 0, "{tally:?}");
}
