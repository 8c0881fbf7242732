//! Ephemeral removal (`--scenario ephemeral`): a separate process (this binary, run again with
//! `--hold-ephemeral`) holds an ephemeral node; it is SIGKILLed, and a watcher on another member
//! times how long the node takes to disappear.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rmif_bench::helper;
use rmif_bench::measure::Results;

use crate::client::Conn;
use crate::cluster::{Cluster, followers};
use crate::process::{Process, spawn_grouped};
use crate::system::Change;
use crate::{HANG, System, etcd, rmif, zookeeper};

/// The ephemeral node's session timeout (etcd: lease TTL).
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of its figure.
pub const METRIC: &str = "ephemeral";

/// Times `count` removals and records every one, in ms.
pub async fn run(cluster: &Cluster, leader: usize, count: usize, results: &mut Results<System>) {
    let times = ephemeral_removal(cluster, leader, count).await;
    eprintln!("  ephemeral      {times:.0?} ms");
    for time in times {
        results.record(cluster.system, METRIC, time);
    }
}

/// The holder process's `main`: holds an ephemeral node at `path` on `server` until it is
/// killed (or the bench goes away), printing `ready <granted timeout ms>` once the node exists.
pub fn hold(system: System, server: SocketAddr, path: &str) {
    helper::exit_with_parent();
    let ready = |granted: Duration| helper::announce(format_args!("ready {}", granted.as_millis()));
    rmif_bench::runtime().block_on(async move {
        match system {
            System::Rmif => rmif::hold_ephemeral(server, path, SESSION_TIMEOUT, ready).await,
            System::Etcd => etcd::hold_ephemeral(server, path, SESSION_TIMEOUT, ready).await,
            System::Zk => zookeeper::hold_ephemeral(server, path, SESSION_TIMEOUT, ready).await,
        }
    });
}

/// The holder process, seen from the bench.
struct Holder {
    process: Process,
    granted_ms: u64,
}

impl Holder {
    fn start(system: System, server: SocketAddr, path: &str) -> Holder {
        let mut command = helper::command(["--hold-ephemeral", system.name(), "--path", path]);
        command.arg("--server").arg(server.to_string());
        // Its own process group, like the servers', so that the kill takes all of it.
        let mut child = spawn_grouped(command).expect("start the holder process");
        let line = helper::announcement(&mut child);
        let granted_ms = line
            .strip_prefix("ready ")
            .and_then(|ms| ms.trim().parse().ok())
            .unwrap_or_else(|| panic!("holder printed {line:?}"));
        Holder {
            process: Process { child },
            granted_ms,
        }
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

/// Times, `count` times, from SIGKILLing the holder until a watcher on another member saw the
/// node deleted. Returns ms.
async fn ephemeral_removal(cluster: &Cluster, leader: usize, count: usize) -> Vec<f64> {
    let (holder_member, watcher_member) = followers(leader);
    let mut times = Vec::new();
    for i in 0..count {
        let path = format!("/bench/eph/n{i}");
        let mut holder = Holder::start(cluster.system, cluster.clients[holder_member], &path);
        assert_eq!(
            holder.granted_ms,
            SESSION_TIMEOUT.as_millis() as u64,
            "{} granted another session timeout",
            cluster.system.name()
        );
        let mut watch = Conn::to(cluster.system, cluster.clients[watcher_member])
            .await
            .expect("watcher")
            .watch(&path)
            .await
            .expect("arm the watch");
        // Let the session settle into its steady heartbeat rhythm.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed = Instant::now();
        holder.kill();
        let change = tokio::time::timeout(HANG, watch.next_change())
            .await
            .unwrap_or_else(|_| panic!("{path} still there {HANG:?} after its holder died"));
        assert_eq!(change, Ok(Change::Deleted), "unexpected notification");
        times.push(killed.elapsed().as_secs_f64() * 1000.0);
    }
    times
}
