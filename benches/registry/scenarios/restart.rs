//! Restart (`--scenario restart`): a cluster loaded with many nodes has a follower stopped
//! (SIGTERM, then SIGKILL) and started again on its data; the time from its spawn until its
//! client port accepts, and until it is healthy: it serves, from its own state, a node written
//! while it was down. The size scenario restarts a follower the same way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmif_bench::measure::Results;

use crate::client::Conn;
use crate::cluster::{Cluster, followers};
use crate::logs::{self, Event, Kind};
use crate::scenarios::load::{self, Until};
use crate::servers::Servers;
use crate::{System, VALUE};

/// Clients loading the cluster.
const CLIENTS: usize = 64;
/// How long a restarted member may take to accept connections, then to be healthy, before the
/// scenario fails: replaying a long log may take a while, but not this long.
const COME_BACK: Duration = Duration::from_secs(120);

/// How a follower is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, waiting until it exits: a clean stop.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

impl Stop {
    pub const ALL: [Stop; 2] = [Stop::Term, Stop::Kill];

    pub fn name(self) -> &'static str {
        match self {
            Stop::Term => "sigterm",
            Stop::Kill => "sigkill",
        }
    }
}

/// The metric of `figure` (e.g. `healthy`) after a stop by `stop`.
pub fn metric(stop: Stop, figure: &str) -> String {
    format!("restart/{}/{figure}", stop.name())
}

pub const LOAD_RATE: &str = "restart/load-rate";
pub const NODES: &str = "restart/nodes";

/// What one restart took.
#[derive(Debug)]
pub struct Restarted {
    /// The member restarted (0-based).
    pub member: usize,
    /// From SIGTERM until the process exited (zero for SIGKILL).
    pub stopping: Duration,
    /// Its data directory's size when it was stopped, in bytes.
    pub data_bytes: u64,
    /// From its spawn until its client port accepted a connection.
    pub accepting: Duration,
    /// From its spawn until it served the node written while it was down.
    pub healthy: Duration,
    /// What it logged about recovering: start-up replay, snapshots installed.
    pub recovery: Vec<Event>,
}

impl Restarted {
    /// Entries replayed from its own log and how long applying them took, as the member logged
    /// them (rmif's "start-up replay: recovered log applied" line, or failing that the first
    /// "start-up replay" line), if it did.
    pub fn replay(&self) -> Option<(u64, u64)> {
        let replay = |e: &&Event| e.message.contains("start-up replay");
        self.recovery
            .iter()
            .filter(replay)
            .find(|e| e.message.contains("applied"))
            .or_else(|| self.recovery.iter().find(replay))
            .map(|e| {
                (
                    e.number("entries").unwrap_or(0),
                    e.number("took_ms").unwrap_or(0),
                )
            })
    }

    /// One line for the scenario's output.
    pub fn describe(&self) -> String {
        let recovery = if self.recovery.is_empty() {
            "nothing logged about recovery".to_owned()
        } else {
            self.recovery
                .iter()
                .map(Event::describe)
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!(
            "member {}: stop {:.0} ms, data {:.1} MiB, accepting after {:.0} ms, healthy after {:.0} ms; {recovery}",
            self.member + 1,
            ms(self.stopping),
            self.data_bytes as f64 / (1024.0 * 1024.0),
            ms(self.accepting),
            ms(self.healthy),
        )
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Whether the scenario measures `system`: rmif and etcd (ZooKeeper's restart is not measured).
pub fn measures(system: System) -> bool {
    matches!(system, System::Rmif | System::Etcd)
}

/// A fresh cluster of `system` loaded with `nodes` nodes, then a follower restarted after each
/// kind of stop; records the times in ms and the data directory's size in MiB.
pub async fn run(system: System, servers: &Servers, nodes: u64, results: &mut Results<System>) {
    let mut cluster = Cluster::start(system, servers);
    cluster.wait_ready().await;
    let mut setup = Conn::connect(system, &cluster.clients)
        .await
        .expect("setup client");
    for path in ["/bench", "/bench/restart"] {
        setup.ensure(path).await.expect("setup node");
    }
    let started = Instant::now();
    let written = load::create_nodes(
        &cluster,
        CLIENTS,
        Arc::new(|seq| (format!("/bench/restart/n{seq}"), VALUE.to_vec())),
        Until::Count(nodes),
        false,
    )
    .await;
    written.assert_complete("restart: loading the cluster");
    let rate = written.succeeded as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  loaded {} nodes in {:.1} s ({rate:.0} writes/s, {CLIENTS} clients)",
        written.succeeded,
        started.elapsed().as_secs_f64()
    );
    results.record(system, LOAD_RATE, rate);
    results.record(system, NODES, written.succeeded as f64);
    for stop in Stop::ALL {
        let marker = format!("/bench/restart/after-{}", stop.name());
        let restarted = restart_follower(&mut cluster, stop, &marker).await;
        eprintln!("  {}: {}", stop.name(), restarted.describe());
        record(system, stop, &restarted, results);
    }
}

/// Records one restart's figures.
fn record(system: System, stop: Stop, restarted: &Restarted, results: &mut Results<System>) {
    results.record(system, metric(stop, "accepting"), ms(restarted.accepting));
    results.record(system, metric(stop, "healthy"), ms(restarted.healthy));
    results.record(system, metric(stop, "stopping"), ms(restarted.stopping));
    results.record(
        system,
        metric(stop, "data-mib"),
        restarted.data_bytes as f64 / (1024.0 * 1024.0),
    );
    if let Some((entries, took_ms)) = restarted.replay() {
        results.record(system, metric(stop, "replay-entries"), entries as f64);
        results.record(system, metric(stop, "replay-ms"), took_ms as f64);
    }
}

/// Stops a follower by `stop`, creates `marker` on the others, starts the follower again on its
/// data and times it until it accepts connections and until it serves `marker` from its own
/// state. Panics if it does not come back within two minutes.
pub async fn restart_follower(cluster: &mut Cluster, stop: Stop, marker: &str) -> Restarted {
    let system = cluster.system;
    let leader = cluster.wait_ready().await;
    let member = followers(leader).0;
    let stopping = match stop {
        Stop::Term => cluster.terminate(member),
        Stop::Kill => {
            cluster.kill(member);
            Duration::ZERO
        }
    };
    let data_bytes = dir_bytes(&cluster.data_dir(member));
    // A write the stopped member has not seen: healthy means caught up with the leader.
    let others: Vec<SocketAddr> = (0..3)
        .filter(|m| *m != member)
        .map(|m| cluster.clients[m])
        .collect();
    let mut writer = Conn::connect(system, &others)
        .await
        .expect("client of the members still up");
    writer
        .create(marker, VALUE)
        .await
        .unwrap_or_else(|e| panic!("writing {marker} with a follower down: {e}"));
    let log = cluster.log_path(member);
    let from = logs::length(&log);
    let addr = cluster.clients[member];

    let spawned = Instant::now();
    cluster.spawn(member);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        come_back(cluster, member, spawned, "accepts connections");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let accepting = spawned.elapsed();
    while !healthy(system, addr, marker).await {
        come_back(
            cluster,
            member,
            spawned,
            "serves what was written while it was down",
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let healthy = spawned.elapsed();
    // The lines about recovery may follow the first answers by a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recovery = logs::events(system, member, &log, from)
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind(),
                Some(Kind::Replay | Kind::SnapshotInstalled | Kind::SnapshotTaken)
            )
        })
        .collect();
    cluster.wait_ready().await;
    Restarted {
        member,
        stopping,
        data_bytes,
        accepting,
        healthy,
        recovery,
    }
}

/// Panics if `member` exited or has not done `what` within [`COME_BACK`] of `spawned`.
fn come_back(cluster: &mut Cluster, member: usize, spawned: Instant, what: &str) {
    cluster.check_alive();
    if spawned.elapsed() > COME_BACK {
        cluster.keep_files = true;
        panic!(
            "{} member {} restarted but never {what} ({} s)",
            cluster.system.name(),
            member + 1,
            COME_BACK.as_secs()
        );
    }
}

/// Whether the member at `addr` serves `marker` from its own state (rmif `Stale`, etcd
/// serializable); for etcd also that its `/health` says true. Each check uses a new client, so
/// that no client's reconnection back-off is measured.
async fn healthy(system: System, addr: SocketAddr, marker: &str) -> bool {
    let check = async {
        if system == System::Etcd && !etcd_health(addr).await {
            return false;
        }
        let Ok(mut conn) =
            Conn::with_request_deadline(system, &[addr], Duration::from_millis(500)).await
        else {
            return false;
        };
        conn.read(marker, false).await.is_ok_and(|v| v == VALUE)
    };
    tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .unwrap_or(false)
}

/// etcd's `GET /health` on its client port says `"health":"true"`.
async fn etcd_health(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).contains("\"health\":\"true\"")
}

/// The bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
