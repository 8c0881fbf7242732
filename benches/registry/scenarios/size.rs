//! Size (`--scenario size`, rmif only): a cluster filled step by step with persistent nodes (a
//! tree of services and their providers, ~240-byte provider metadata each), then sessions kept
//! alive from this process, then one ephemeral node per session; each member's resident memory
//! after every step, the leader's CPU while only heartbeats flow, the snapshot of it all, and a
//! follower's restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use rmif_bench::measure::Results;

use crate::client::Conn;
use crate::cluster::{Cluster, followers};
use crate::logs;
use crate::process::cpu_ms;
use crate::scenarios::load::{self, Until};
use crate::scenarios::restart::{self, Stop};
use crate::servers::Servers;
use crate::system::Tuning;
use crate::system::provider_metadata;
use crate::{System, rmif};

/// Clients writing the nodes; clients holding the sessions.
const WRITERS: usize = 64;
const SESSION_CLIENTS: usize = 30;
/// Providers per service in the tree of persistent nodes (with the service's two nodes, 100
/// nodes per service).
const PROVIDERS_PER_SERVICE: u64 = 98;
/// Quiet time before each memory reading.
const SETTLE: Duration = Duration::from_secs(3);
/// The longest the scenario writes filler while waiting for a snapshot of the whole state.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// What the scenario builds.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Persistent nodes, services and providers together.
    pub nodes: u64,
    /// Sessions, each with one ephemeral node.
    pub sessions: usize,
    /// Their timeout (a heartbeat every third of it).
    pub session_timeout: Duration,
    /// How long the leader's CPU is measured, with and without the sessions.
    pub cpu_window: Duration,
    /// The members' snapshot interval (`None`: their default, 100,000 entries).
    pub snapshot_entries: Option<u64>,
}

/// The memory steps, in order; the last, once a snapshot of everything has compacted the
/// members' logs (the earlier steps' figures include the log entries kept since the last
/// snapshot).
pub const STEPS: [&str; 5] = ["empty", "nodes", "sessions", "ephemerals", "snapshot"];

/// The metric of `figure` for the leader or the followers (mean of the two).
pub fn metric(figure: &str, leader: bool) -> String {
    format!(
        "size/{figure}/{}",
        if leader { "leader" } else { "followers" }
    )
}

/// Whether the scenario measures `system`: rmif only.
pub fn measures(system: System) -> bool {
    system == System::Rmif
}

/// Each member's resident memory in KiB, after [`SETTLE`].
async fn resident(cluster: &Cluster) -> [f64; 3] {
    tokio::time::sleep(SETTLE).await;
    [0, 1, 2].map(|m| {
        cluster
            .member_resident_kib(m)
            .unwrap_or_else(|| panic!("member {} is not running", m + 1)) as f64
    })
}

/// Records `value(member)` for the leader and the mean of the followers.
fn record_roles(
    results: &mut Results<System>,
    figure: &str,
    leader: usize,
    value: impl Fn(usize) -> f64,
) {
    let (a, b) = followers(leader);
    results.record(System::Rmif, metric(figure, true), value(leader));
    results.record(
        System::Rmif,
        metric(figure, false),
        (value(a) + value(b)) / 2.0,
    );
}

/// The CPU time `members` and this process use over `window`, in ms per second.
async fn cpu_per_second(cluster: &Cluster, window: Duration) -> ([f64; 3], f64) {
    let member = |m| cluster.member_cpu_ms(m).unwrap_or(f64::NAN);
    let before = ([0, 1, 2].map(member), cpu_ms(0).unwrap_or(f64::NAN));
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let seconds = started.elapsed().as_secs_f64();
    let after = ([0, 1, 2].map(member), cpu_ms(0).unwrap_or(f64::NAN));
    (
        [0, 1, 2].map(|m| (after.0[m] - before.0[m]) / seconds),
        (after.1 - before.1) / seconds,
    )
}

/// Builds the cluster's content step by step and records every figure.
pub async fn run(servers: &Servers, plan: &Plan, results: &mut Results<System>) {
    let system = System::Rmif;
    let tuning = Tuning {
        snapshot_entries: plan.snapshot_entries,
    };
    let mut cluster = Cluster::start_tuned(system, servers, tuning);
    let leader = cluster.wait_ready().await;
    let mut setup = Conn::connect(system, &cluster.clients)
        .await
        .expect("setup client");
    for path in [
        "/bench",
        "/bench/size",
        "/bench/size/live",
        "/bench/size/filler",
    ] {
        setup.ensure(path).await.expect("setup node");
    }
    let mut rss = vec![resident(&cluster).await];

    // Persistent nodes: services, each with a providers node and its providers.
    let services = (plan.nodes / (PROVIDERS_PER_SERVICE + 2)).max(1);
    let leaves = plan.nodes.saturating_sub(2 * services);
    let steps: [(u64, load::NodeOf); 3] = [
        (
            services,
            Arc::new(|s| (format!("/bench/size/svc-{s}"), Vec::new())),
        ),
        (
            services,
            Arc::new(|s| (format!("/bench/size/svc-{s}/providers"), Vec::new())),
        ),
        (
            leaves,
            Arc::new(move |seq| {
                let (s, p) = (seq % services, seq / services);
                let addr = provider_addr(s, p);
                (
                    format!("/bench/size/svc-{s}/providers/{addr}"),
                    provider_metadata(addr).to_json(),
                )
            }),
        ),
    ];
    let started = Instant::now();
    for (count, node) in steps {
        let written = load::create_nodes(&cluster, WRITERS, node, Until::Count(count), false).await;
        written.assert_complete("size: creating the persistent nodes");
    }
    let nodes = 2 * services + leaves;
    eprintln!(
        "  {nodes} persistent nodes ({services} services) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    rss.push(resident(&cluster).await);
    let (idle, _) = cpu_per_second(&cluster, plan.cpu_window).await;

    // Sessions, kept alive from this process.
    let started = Instant::now();
    let sessions = rmif::open_sessions(
        &cluster.clients,
        SESSION_CLIENTS,
        plan.sessions,
        plan.session_timeout,
    )
    .await
    .unwrap_or_else(|e| panic!("size: {e}"));
    eprintln!(
        "  {} sessions of {} s opened in {:.1} s",
        sessions.len(),
        plan.session_timeout.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    rss.push(resident(&cluster).await);
    let (busy, bench_cpu) = cpu_per_second(&cluster, plan.cpu_window).await;

    // One ephemeral node per session.
    futures_util::stream::iter(sessions.iter().enumerate())
        .map(|(i, session)| {
            let addr = provider_addr(u64::MAX - i as u64, i as u64);
            async move {
                rmif::create_ephemeral(
                    session,
                    &format!("/bench/size/live/{addr}"),
                    &provider_metadata(addr).to_json(),
                )
                .await
            }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("size: ephemeral node: {e}"));
    rss.push(resident(&cluster).await);
    if cluster.wait_ready().await != leader {
        eprintln!("    the leader changed during the scenario: roles below are the first leader's");
    }

    let kib = |step: usize, m: usize| rss[step][m];
    for (step, name) in STEPS.iter().enumerate().take(4) {
        record_roles(results, &format!("rss-mib-{name}"), leader, |m| {
            kib(step, m) / 1024.0
        });
    }
    let per = |step: usize, count: f64| {
        move |m: usize| (kib(step, m) - kib(step - 1, m)) * 1024.0 / count
    };
    record_roles(results, "bytes-per-node", leader, per(1, nodes as f64));
    record_roles(
        results,
        "bytes-per-session",
        leader,
        per(2, plan.sessions as f64),
    );
    record_roles(
        results,
        "bytes-per-ephemeral",
        leader,
        per(3, plan.sessions as f64),
    );
    record_roles(results, "cpu-idle", leader, |m| idle[m]);
    record_roles(results, "cpu-keepalive", leader, |m| busy[m]);
    results.record(system, "size/cpu-bench", bench_cpu);
    results.record(system, "size/nodes", nodes as f64);
    results.record(system, "size/sessions", plan.sessions as f64);
    eprintln!(
        "  resident KiB per member (empty, +nodes, +sessions, +ephemerals): {:?}; leader is member {}",
        (0..3)
            .map(|m| rss.iter().map(|r| r[m] as u64).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        leader + 1
    );
    eprintln!(
        "  CPU ms/s per member without sessions {idle:.1?}, with {} sessions' heartbeats {busy:.1?} (this process {bench_cpu:.1})",
        plan.sessions
    );

    snapshot(&mut cluster, leader, results).await;
    let compacted = resident(&cluster).await;
    record_roles(results, "rss-mib-snapshot", leader, |m| {
        compacted[m] / 1024.0
    });
    eprintln!("  resident KiB per member after the snapshot: {compacted:?}");

    let restarted =
        restart::restart_follower(&mut cluster, Stop::Term, "/bench/size/after-restart").await;
    eprintln!("  follower restart (sigterm): {}", restarted.describe());
    results.record(
        system,
        "size/restart-accepting",
        restarted.accepting.as_secs_f64() * 1000.0,
    );
    results.record(
        system,
        "size/restart-healthy",
        restarted.healthy.as_secs_f64() * 1000.0,
    );
    results.record(
        system,
        "size/restart-data-mib",
        restarted.data_bytes as f64 / (1024.0 * 1024.0),
    );
    drop(sessions);
}

/// A stand-in provider address, distinct for each (service, provider).
fn provider_addr(service: u64, provider: u64) -> SocketAddr {
    let [.., a, b] = service.to_be_bytes();
    SocketAddr::from((
        [10, a, b, (provider % 250) as u8 + 1],
        20_000 + (provider / 250) as u16,
    ))
}

/// Writes filler (sets of one node, which add nothing to the state) until every member has
/// logged a snapshot taken at or after the index the state was complete at; records its size
/// and the time it took, as the leader logged them.
async fn snapshot(cluster: &mut Cluster, leader: usize, results: &mut Results<System>) {
    let complete = rmif::applied(cluster.clients[leader])
        .await
        .expect("the leader's status");
    let from: Vec<u64> = (0..3).map(|m| logs::length(&cluster.log_path(m))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = load::connections(cluster, 16)
        .await
        .into_iter()
        .map(|mut conn| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    conn.set("/bench/size/filler", crate::VALUE)
                        .await
                        .unwrap_or_else(|e| panic!("size: filler write: {e}"));
                }
            })
        })
        .collect();
    let started = Instant::now();
    let taken = loop {
        cluster.check_alive();
        let taken: Vec<Option<logs::Event>> = (0..3)
            .map(|m| {
                logs::events(System::Rmif, m, &cluster.log_path(m), from[m])
                    .into_iter()
                    .find(|e| {
                        e.message.contains("snapshot taken")
                            && e.number("index").is_some_and(|i| i >= complete)
                    })
            })
            .collect();
        if taken.iter().all(Option::is_some) || started.elapsed() > SNAPSHOT_WAIT {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("filler writer");
    }
    let Some(Some(own)) = taken.get(leader) else {
        panic!(
            "size: no snapshot of the whole state within {} s of filler writes",
            SNAPSHOT_WAIT.as_secs()
        );
    };
    for event in taken.iter().flatten() {
        eprintln!("  {}", event.describe());
    }
    let bytes = own.number("bytes").unwrap_or(0) as f64;
    let took = own.number("took_ms").unwrap_or(0) as f64;
    results.record(System::Rmif, "size/snapshot-mib", bytes / (1024.0 * 1024.0));
    results.record(System::Rmif, "size/snapshot-ms", took);
}
