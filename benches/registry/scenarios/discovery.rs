//! Discovery (`--scenario discovery`): consumers each following one service's provider list
//! through a client of their own, as each system's ecosystem does it (see `crate::discovery`).
//!
//! - **propagation**: N consumers of a service that has [`PROVIDERS`] providers; a new provider
//!   announces itself; the time from issuing its announcement until every consumer's list
//!   holds it. The provider is then withdrawn (untimed, every consumer must see that too) and
//!   the next one announced.
//! - **bytes per change**: one consumer of a service of 10 or 1,000 providers, connected
//!   through a counting proxy; the bytes the member sends it for one provider being added.
//! - **memory per consumer**: the members' resident memory before and after the N consumers
//!   were set up, over N.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rmif_bench::measure::{Results, Unit, median, quantile};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, followers};
use crate::discovery::{Consumer, ProviderHost, provider_addr};
use crate::process::cpu_ms;
use crate::proxy::Proxy;
use crate::{HANG, System};

/// Providers every propagation cell's service already has.
pub const PROVIDERS: usize = 10;
/// List sizes of the bytes-per-change cells.
pub const LIST_SIZES: [usize; 2] = [10, 1000];
/// Untimed announcements before each propagation cell's timed ones (the JVM's JIT, lazily
/// grown buffers).
const WARMUP_ANNOUNCEMENTS: usize = 3;
/// Pause between one announcement's withdrawal and the next announcement: providers come and go
/// now and then, not back to back.
const PAUSE: Duration = Duration::from_millis(50);
/// Consumers set up at once.
const SETUP_CONCURRENCY: usize = 50;
/// How long a consumer's connection must have been silent before a change is counted, and
/// how long after the consumer saw the change its bytes are still counted.
const QUIET: Duration = Duration::from_millis(300);
const TRAILING: Duration = Duration::from_millis(50);

/// Port of the first provider already there, and of the first one announced.
const BACKGROUND_PORT: u16 = 20_000;
const ANNOUNCED_PORT: u16 = 40_000;

/// The names of the figures.
pub fn latency_metric(consumers: usize, figure: &str) -> String {
    format!("discovery/{consumers}/{figure}")
}
pub fn bytes_metric(providers: usize) -> String {
    format!("discovery/bytes/{providers}")
}
pub fn bytes_up_metric(providers: usize) -> String {
    format!("discovery/bytes-up/{providers}")
}
pub fn memory_metric(consumers: usize) -> String {
    format!("discovery/memory/{consumers}")
}

/// How much the scenario does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Consumer counts of the propagation cells.
    pub consumers: Vec<usize>,
    /// Timed announcements per propagation cell.
    pub announcements: usize,
    /// List sizes of the bytes cells.
    pub list_sizes: Vec<usize>,
    /// Changes counted per bytes cell.
    pub byte_changes: usize,
}

/// Services named so far: every cell gets a service of its own.
static SERVICES: AtomicUsize = AtomicUsize::new(0);

fn new_service() -> String {
    format!(
        "bench.Discovery{}",
        SERVICES.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs every cell of `plan` and records its figures.
pub async fn run(cluster: &Cluster, leader: usize, plan: &Plan, results: &mut Results<System>) {
    let system = cluster.system;
    for &consumers in &plan.consumers {
        let cell = propagation(cluster, leader, consumers, plan.announcements).await;
        let at = |q| quantile(&cell.latencies_ms, q).unwrap_or(f64::NAN);
        let (p50, p99, max) = (at(0.50), at(0.99), at(1.0));
        eprintln!(
            "  discovery/{consumers:<5} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms  \
             {:+.1} KiB per consumer  CPU per change: consumers {:.2} ms, members {:.2} ms",
            cell.kib_per_consumer, cell.cpu.consumers_ms, cell.cpu.members_ms
        );
        for latency in cell.latencies_ms {
            results.record(system, latency_metric(consumers, "latency"), latency);
        }
        results.record(system, memory_metric(consumers), cell.kib_per_consumer);
        results.record(
            system,
            latency_metric(consumers, "cpu-consumers"),
            cell.cpu.consumers_ms,
        );
        results.record(
            system,
            latency_metric(consumers, "cpu-members"),
            cell.cpu.members_ms,
        );
    }
    for &providers in &plan.list_sizes {
        let (down, up) = bytes_per_change(cluster, leader, providers, plan.byte_changes).await;
        eprintln!(
            "  discovery/bytes/{providers:<5} {down:.0} B to the consumer, {up:.0} B from it per change"
        );
        results.record(system, bytes_metric(providers), down);
        results.record(system, bytes_up_metric(providers), up);
    }
}

/// What one propagation cell measured.
struct Propagation {
    /// Each timed announcement's, in ms.
    latencies_ms: Vec<f64>,
    kib_per_consumer: f64,
    cpu: Cpu,
}

/// CPU time used while announcements and withdrawals went on, per change (either), background
/// work (heartbeats, the JVM's own threads) included: where the time of a change goes.
struct Cpu {
    /// By this process: the consumers, their clients, and the bench's bookkeeping.
    consumers_ms: f64,
    /// By the three members together.
    members_ms: f64,
}

/// What every consumer is waiting for: provider `addr` to be in its list (`present`) or out of
/// it. Each round is reported once per consumer.
#[derive(Debug, Clone, Copy)]
struct Goal {
    round: usize,
    addr: SocketAddr,
    present: bool,
}

/// `consumers` consumers (consumer i on member i mod 3) of a new service with [`PROVIDERS`]
/// providers; `announcements` timed announcements by a provider on a follower.
async fn propagation(
    cluster: &Cluster,
    leader: usize,
    consumers: usize,
    announcements: usize,
) -> Propagation {
    let system = cluster.system;
    let service = new_service();
    let (announcer_member, background_member) = followers(leader);
    let background = ProviderHost::open(system, cluster.clients[background_member], &service)
        .await
        .expect("provider host");
    announce_all(&background, BACKGROUND_PORT, PROVIDERS).await;

    // The members' memory without this cell's consumers, then with them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = cluster.resident_kib();
    let mut started = start_consumers(cluster, &service, consumers).await;
    for consumer in &mut started {
        consumer
            .wait_until(|c| c.len() == PROVIDERS)
            .await
            .expect("every consumer lists the providers already there");
    }
    assert!(
        background.await_consumers(consumers).await,
        "{} consumers did not all register within {HANG:?}",
        system.name()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = cluster.resident_kib();
    let kib_per_consumer = (after_kib as f64 - before_kib as f64) / consumers as f64;

    // Every consumer in a task of its own, reporting when its list meets the goal.
    let (goal_tx, goal_rx) = watch::channel(None::<Goal>);
    let (reached_tx, mut reached) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let tasks: Vec<_> = started
        .into_iter()
        .map(|consumer| {
            tokio::spawn(follow(
                consumer,
                goal_rx.clone(),
                reached_tx.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let announcer = ProviderHost::open(system, cluster.clients[announcer_member], &service)
        .await
        .expect("announcing provider host");
    let mut latencies_ms = Vec::new();
    let mut round = 0;
    let cpu_before = (cpu_ms(0).unwrap_or(0.0), cluster.cpu_ms());
    for sample in 0..WARMUP_ANNOUNCEMENTS + announcements {
        let addr = provider_addr(ANNOUNCED_PORT + sample as u16);
        goal_tx.send_replace(Some(Goal {
            round,
            addr,
            present: true,
        }));
        let start = Instant::now();
        announcer.announce(addr).await.expect("announce");
        let last = all_reached(&mut reached, consumers, round, system).await;
        if sample >= WARMUP_ANNOUNCEMENTS {
            latencies_ms.push(Unit::Millis.of(last.saturating_duration_since(start)));
        }
        round += 1;
        goal_tx.send_replace(Some(Goal {
            round,
            addr,
            present: false,
        }));
        announcer.withdraw(addr).await.expect("withdraw");
        all_reached(&mut reached, consumers, round, system).await;
        round += 1;
        tokio::time::sleep(PAUSE).await;
    }
    let changes = round as f64;
    let cpu = Cpu {
        consumers_ms: (cpu_ms(0).unwrap_or(0.0) - cpu_before.0) / changes,
        members_ms: (cluster.cpu_ms() - cpu_before.1) / changes,
    };

    // Clean up: the consumers' sessions, then the providers'; the next cell starts bare.
    stop.cancel();
    let mut closing = Vec::new();
    for task in tasks {
        closing.push(task.await.expect("consumer task"));
    }
    futures_util::stream::iter(closing)
        .for_each_concurrent(SETUP_CONCURRENCY, Consumer::close)
        .await;
    if !background.await_consumers(0).await {
        eprintln!("    (consumer registrations still there {HANG:?} after closing)");
    }
    announcer.close().await;
    background.close().await;
    Propagation {
        latencies_ms,
        kib_per_consumer,
        cpu,
    }
}

/// Waits until each of `consumers` consumers reported `round`; returns when the last one did.
async fn all_reached(
    reached: &mut mpsc::UnboundedReceiver<(usize, Instant)>,
    consumers: usize,
    round: usize,
    system: System,
) -> Instant {
    let mut last = None::<Instant>;
    for _ in 0..consumers {
        let (seen_round, at) = tokio::time::timeout(HANG, reached.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "not every {} consumer followed within {HANG:?}",
                    system.name()
                )
            })
            .expect("consumer tasks alive");
        assert_eq!(seen_round, round, "a consumer reported another round");
        last = Some(last.map_or(at, |l| l.max(at)));
    }
    last.expect("at least one consumer")
}

/// Announces `count` providers from port `first` on, a few at a time.
async fn announce_all(host: &ProviderHost, first: u16, count: usize) {
    futures_util::stream::iter(0..count)
        .map(|i| host.announce(provider_addr(first + i as u16)))
        .buffer_unordered(SETUP_CONCURRENCY)
        .for_each(|announced| async move { announced.expect("announce a provider") })
        .await;
}

/// Starts `count` consumers of `service`, consumer i on member i mod 3, a few at a time.
async fn start_consumers(cluster: &Cluster, service: &str, count: usize) -> Vec<Consumer> {
    let system = cluster.system;
    futures_util::stream::iter(0..count)
        .map(|i| Consumer::start(system, cluster.clients[i % 3], service, i))
        .buffer_unordered(SETUP_CONCURRENCY)
        .map(|consumer| consumer.unwrap_or_else(|e| panic!("{} consumer: {e}", system.name())))
        .collect()
        .await
}

/// One consumer's task: after every change of its list, reports the current goal's round (once)
/// if the list meets it. Returns the consumer when stopped, to be closed.
async fn follow(
    mut consumer: Consumer,
    goal: watch::Receiver<Option<Goal>>,
    reached: mpsc::UnboundedSender<(usize, Instant)>,
    stop: CancellationToken,
) -> Consumer {
    let mut reported = None;
    loop {
        // The goal is set before the write that meets it is issued: checking after each change
        // of the list is enough.
        if let Some(goal) = *goal.borrow()
            && reported != Some(goal.round)
            && consumer.holds(goal.addr) == goal.present
        {
            reported = Some(goal.round);
            let _ = reached.send((goal.round, Instant::now()));
        }
        tokio::select! {
            _ = stop.cancelled() => return consumer,
            changed = consumer.changed() => {
                if let Err(e) = changed {
                    panic!("a consumer stopped following: {e}");
                }
            }
        }
    }
}

/// One consumer of a new service with `providers` providers, through a counting proxy to a
/// follower; `changes` times, a provider is added once the connection is quiet, and the bytes
/// both ways are counted until [`TRAILING`] after the consumer's list holds it. Returns the
/// medians (member to consumer, consumer to member).
async fn bytes_per_change(
    cluster: &Cluster,
    leader: usize,
    providers: usize,
    changes: usize,
) -> (f64, f64) {
    let system = cluster.system;
    let service = new_service();
    let (consumer_member, host_member) = followers(leader);
    let host = ProviderHost::open(system, cluster.clients[host_member], &service)
        .await
        .expect("provider host");
    announce_all(&host, BACKGROUND_PORT, providers).await;
    let proxy = Proxy::start(cluster.clients[consumer_member])
        .await
        .expect("proxy");
    let mut consumer = Consumer::start(system, proxy.addr, &service, 0)
        .await
        .unwrap_or_else(|e| panic!("{} consumer: {e}", system.name()));
    consumer
        .wait_until(|c| c.len() == providers)
        .await
        .expect("the consumer lists every provider");
    let mut down = Vec::new();
    let mut up = Vec::new();
    for change in 0..changes {
        let addr = provider_addr(ANNOUNCED_PORT + change as u16);
        if !proxy.quiet(QUIET, Duration::from_secs(10)).await {
            eprintln!("    (the consumer's connection was never quiet for {QUIET:?})");
        }
        let (down_before, up_before) = proxy.totals();
        host.announce(addr).await.expect("announce");
        consumer
            .wait_until(|c| c.holds(addr))
            .await
            .expect("the consumer sees the new provider");
        tokio::time::sleep(TRAILING).await;
        let (down_after, up_after) = proxy.totals();
        down.push((down_after - down_before) as f64);
        up.push((up_after - up_before) as f64);
        host.withdraw(addr).await.expect("withdraw");
        consumer
            .wait_until(|c| !c.holds(addr))
            .await
            .expect("the consumer sees the provider go");
    }
    consumer.close().await;
    drop(proxy);
    host.close().await;
    (
        median(&down).unwrap_or(f64::NAN),
        median(&up).unwrap_or(f64::NAN),
    )
}
