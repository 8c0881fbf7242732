//! Probes of providers by the registry's leader. Every `Tick_time` (with jitter), the leader
//! sends the protocol's heartbeat to each address announced under
//! `/rmif/services/{service}/providers/{address}`, over one long-lived connection per address;
//! after `Again_time` failed probes in a row it marks the provider's nodes unavailable (the
//! `unavailable` field of their data, through a Raft write, so consumers hear it as a change),
//! and clears the mark once a probe succeeds again. With `Monitor_log` the changes are logged
//! and kept as [`alerts`].
//!
//! All probing state is soft: a member that stops leading drops it, and a new leader starts
//! from the marks in the tree. Each address is probed by a task of its own, each probe bounded
//! by `Tick_time`, so a provider that accepts connections and never answers delays nobody.

mod alerts;
mod link;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmif_registry::discovery::{
    Alert, AlertKind, ProviderMetadata, SERVICES_ROOT, Unavailable, service_key_from_node_name,
};
use rmif_registry::path;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::replica::Replica;
use crate::tree::{Action, Tree};
use link::ProbeLink;

/// How the leader probes providers (the member's `Tick_time`, `Again_time`, `Monitor_log`).
#[derive(Debug, Clone)]
pub(crate) struct ProbeConfig {
    /// Time between two probes of an address, and the most one probe may take.
    pub tick: Duration,
    /// Failed probes in a row that make a provider unavailable.
    pub again: u32,
    /// Log and keep alerts of providers becoming unavailable and available.
    pub monitor_log: bool,
}

/// The outcome of one probe of one address, by the probing of one leadership.
struct Probed {
    generation: u64,
    addr: SocketAddr,
    outcome: Result<(), String>,
}

/// Starts the prober of this member; it probes only while the member leads.
pub(crate) fn start(
    replica: Replica,
    config: ProbeConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(replica, config, shutdown))
}

fn is_leader(replica: &Replica) -> bool {
    let status = replica
        .shared()
        .status
        .read()
        .unwrap_or_else(|p| p.into_inner());
    status.role == "leader"
}

async fn run(replica: Replica, config: ProbeConfig, shutdown: CancellationToken) {
    let (results, mut probed) = mpsc::channel::<Probed>(4096);
    let mut ticker = tokio::time::interval(config.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut leading: Option<Leading> = None;
    let mut generation = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if !is_leader(&replica) {
                    if leading.take().is_some() {
                        tracing::info!("no longer the leader: provider probes stop here");
                    }
                    continue;
                }
                let state = leading.get_or_insert_with(|| {
                    generation += 1;
                    tracing::info!(
                        tick_ms = config.tick.as_millis() as u64,
                        again = config.again,
                        "leading: probing providers"
                    );
                    Leading::new(replica.clone(), config.clone(), generation, results.clone())
                });
                state.scan();
            }
            Some(result) = probed.recv() => {
                if let Some(state) = leading.as_mut().filter(|s| s.generation == result.generation) {
                    state.record(result.addr, result.outcome);
                }
            }
        }
    }
}

/// A task that is aborted when its handle is dropped.
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the leader knows of one address.
struct Probing {
    _task: Aborting,
    /// Failed probes in a row.
    failures: u32,
    /// Set once `again` probes failed in a row; cleared by a success.
    down: Option<Unavailable>,
}

/// The probing of one leadership.
struct Leading {
    generation: u64,
    replica: Replica,
    config: ProbeConfig,
    results: mpsc::Sender<Probed>,
    /// The tree's zxid at the last scan.
    scanned: Option<u64>,
    /// A mark could not be written: the next tick checks every node again even if the tree
    /// did not change.
    unsettled: Arc<AtomicBool>,
    /// Provider node paths by announced address.
    nodes: BTreeMap<SocketAddr, Vec<String>>,
    probes: HashMap<SocketAddr, Probing>,
    /// Nodes whose mark is being written.
    writing: Arc<Mutex<HashSet<String>>>,
    /// Alerts to record, in order (with `Monitor_log`).
    alerts: Option<mpsc::UnboundedSender<Alert>>,
}

impl Leading {
    fn new(
        replica: Replica,
        config: ProbeConfig,
        generation: u64,
        results: mpsc::Sender<Probed>,
    ) -> Self {
        let alerts = config
            .monitor_log
            .then(|| alerts::start_writer(replica.clone()));
        Leading {
            generation,
            replica,
            config,
            results,
            scanned: None,
            unsettled: Arc::default(),
            nodes: BTreeMap::new(),
            probes: HashMap::new(),
            writing: Arc::default(),
            alerts,
        }
    }

    fn tree(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.replica
            .shared()
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Finds the announced addresses (if the tree changed since the last scan, or a mark could
    /// not be written), starts probing new ones, stops probing those no longer announced, and
    /// writes the marks the tree lacks.
    fn scan(&mut self) {
        let unsettled = self.unsettled.swap(false, Ordering::Relaxed);
        let (zxid, nodes, mut marks) = {
            let tree = self.tree();
            if self.scanned == Some(tree.last_zxid()) && !unsettled {
                return;
            }
            let nodes = provider_nodes(&tree);
            // A mark in the tree (from an earlier leader) stands for an address this leader
            // does not probe yet, until a probe succeeds.
            let mut marks: HashMap<SocketAddr, Unavailable> = HashMap::new();
            for (addr, paths) in nodes.iter().filter(|(a, _)| !self.probes.contains_key(a)) {
                if let Some(down) = paths
                    .iter()
                    .find_map(|node| read_metadata(&tree, node).and_then(|(m, _)| m.unavailable))
                {
                    marks.insert(*addr, down);
                }
            }
            (tree.last_zxid(), nodes, marks)
        };
        self.scanned = Some(zxid);
        self.probes.retain(|addr, _| nodes.contains_key(addr));
        for addr in nodes.keys() {
            if self.probes.contains_key(addr) {
                continue;
            }
            let down = marks.remove(addr);
            let failures = if down.is_some() { self.config.again } else { 0 };
            let task = tokio::spawn(probe_loop(
                *addr,
                self.config.tick,
                self.generation,
                self.results.clone(),
            ));
            self.probes.insert(
                *addr,
                Probing {
                    _task: Aborting(task),
                    failures,
                    down,
                },
            );
        }
        self.nodes = nodes;
        // A node announced again, or a provider's own write that raced a mark.
        for addr in self.nodes.keys() {
            self.reconcile(*addr);
        }
    }

    /// Takes in one probe's outcome.
    fn record(&mut self, addr: SocketAddr, outcome: Result<(), String>) {
        let Some(probing) = self.probes.get_mut(&addr) else {
            return;
        };
        let alert = match outcome {
            Ok(()) => {
                probing.failures = 0;
                probing.down.take().map(|down| {
                    let down_ms = now_ms().saturating_sub(down.since_ms);
                    (AlertKind::Available, down.reason, down_ms)
                })
            }
            Err(reason) => {
                probing.failures = probing.failures.saturating_add(1);
                tracing::debug!(%addr, failures = probing.failures, %reason, "probe failed");
                if probing.failures >= self.config.again && probing.down.is_none() {
                    probing.down = Some(Unavailable {
                        reason: reason.clone(),
                        since_ms: now_ms(),
                    });
                    Some((AlertKind::Unavailable, reason, 0))
                } else {
                    None
                }
            }
        };
        // Only a change of state needs writing now; anything else the tree lacks (a node
        // announced again, a lost race) the next scan finds. Reading the address's nodes after
        // every probe cost about a tenth of probing (docs/BENCHMARKS.md).
        if let Some((kind, reason, down_ms)) = alert {
            self.alert(addr, kind, reason, down_ms);
            self.reconcile(addr);
        }
    }

    /// Logs the change for each service announced at `addr`: an alert (WARN, and kept in
    /// `/rmif/alerts`) with `Monitor_log`, an INFO line without.
    fn alert(&self, addr: SocketAddr, kind: AlertKind, reason: String, down_ms: u64) {
        for node in self.nodes.get(&addr).into_iter().flatten() {
            let service = service_of(node);
            let Some(alerts) = &self.alerts else {
                match kind {
                    AlertKind::Unavailable => tracing::info!(
                        %service, address = %addr, %reason, again = self.config.again,
                        "provider marked unavailable: its probes failed"
                    ),
                    AlertKind::Available => tracing::info!(
                        %service, address = %addr, %reason, down_ms,
                        "provider marked available again: it answers probes"
                    ),
                }
                continue;
            };
            match kind {
                AlertKind::Unavailable => tracing::warn!(
                    %service, address = %addr, %reason, again = self.config.again,
                    "provider unavailable: its probes failed; consumers stop calling it"
                ),
                AlertKind::Available => tracing::warn!(
                    %service, address = %addr, %reason, down_ms,
                    "provider available again: it answers probes"
                ),
            }
            let _ = alerts.send(Alert {
                at_ms: now_ms(),
                kind,
                service,
                address: addr.to_string(),
                reason: reason.clone(),
                down_ms,
            });
        }
    }

    /// Writes the mark the leader decided into every node at `addr` whose data says otherwise
    /// (a provider that announced itself again under a new session, or a write that lost a
    /// race with the provider's own, is marked on a later pass).
    fn reconcile(&self, addr: SocketAddr) {
        let (Some(probing), Some(paths)) = (self.probes.get(&addr), self.nodes.get(&addr)) else {
            return;
        };
        let mut writes = Vec::new();
        {
            let tree = self.tree();
            for node in paths {
                let Some((mut metadata, version)) = read_metadata(&tree, node) else {
                    continue;
                };
                if metadata.unavailable.is_some() == probing.down.is_some() {
                    continue;
                }
                metadata.unavailable = probing.down.clone();
                writes.push((node.clone(), metadata.to_json(), version));
            }
        }
        for (node, data, version) in writes {
            if !lock(&self.writing).insert(node.clone()) {
                continue;
            }
            let replica = self.replica.clone();
            let writing = self.writing.clone();
            let unsettled = self.unsettled.clone();
            let deadline = Instant::now() + self.config.tick.max(Duration::from_secs(1));
            tokio::spawn(async move {
                let action = Action::Set {
                    path: node.clone(),
                    data,
                    version: Some(version),
                };
                let written = match replica.propose(action, None, deadline).await {
                    Ok(applied) => applied.outcome.map(drop),
                    Err(error) => Err(error),
                };
                lock(&writing).remove(&node);
                if let Err(error) = written {
                    tracing::debug!(%node, %error, "provider mark not written; next tick");
                    unsettled.store(true, Ordering::Relaxed);
                }
            });
        }
    }
}

/// Probes `addr` every `tick` (give or take a tenth, and first after a random part of a tick,
/// so that the probes of many addresses spread out) until aborted or the leadership's loop is
/// gone.
async fn probe_loop(
    addr: SocketAddr,
    tick: Duration,
    generation: u64,
    results: mpsc::Sender<Probed>,
) {
    tokio::time::sleep(tick.mul_f64(fastrand::f64())).await;
    let mut link = ProbeLink::new(addr);
    loop {
        let started = Instant::now();
        let outcome = link.probe(tick).await;
        let probed = Probed {
            generation,
            addr,
            outcome,
        };
        if results.send(probed).await.is_err() {
            return;
        }
        tokio::time::sleep_until(started + tick.mul_f64(0.9 + 0.2 * fastrand::f64())).await;
    }
}

/// Every provider node of the tree, by the address its name announces.
fn provider_nodes(tree: &Tree) -> BTreeMap<SocketAddr, Vec<String>> {
    let mut nodes: BTreeMap<SocketAddr, Vec<String>> = BTreeMap::new();
    let Ok((services, _)) = tree.children(SERVICES_ROOT) else {
        return nodes;
    };
    for service in services {
        let providers = path::join(&path::join(SERVICES_ROOT, &service), "providers");
        let Ok((names, _)) = tree.children(&providers) else {
            continue;
        };
        for name in names {
            if let Ok(addr) = name.parse::<SocketAddr>() {
                nodes
                    .entry(addr)
                    .or_default()
                    .push(path::join(&providers, &name));
            }
        }
    }
    nodes
}

/// A provider node's metadata and data version; `None` if it is gone or not metadata.
fn read_metadata(tree: &Tree, node: &str) -> Option<(ProviderMetadata, u32)> {
    let (data, stat) = tree.get(node).ok()?;
    let metadata = ProviderMetadata::parse(&data).ok()?;
    Some((metadata, stat.version))
}

/// The service key of a provider node's path.
fn service_of(node: &str) -> String {
    let service = node
        .strip_prefix(SERVICES_ROOT)
        .and_then(|rest| rest.trim_start_matches('/').split('/').next())
        .unwrap_or(node);
    service_key_from_node_name(service)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_node_names_its_service_and_address() {
        assert_eq!(
            service_of("/rmif/services/orders%2Fv2/providers/10.0.0.1:9000"),
            "orders/v2"
        );
        let mut tree = Tree::new();
        let create = |path: &str| crate::tree::Command {
            proposer: crate::tree::Proposer {
                member: 1,
                incarnation: 0,
                seq: 0,
            },
            time_ms: 0,
            session: None,
            action: Action::Create {
                path: path.to_owned(),
                data: Vec::new(),
                ephemeral: false,
                sequential: false,
            },
        };
        let mut zxid = 0;
        for path in [
            "/rmif",
            "/rmif/services",
            "/rmif/services/calc",
            "/rmif/services/calc/providers",
            "/rmif/services/calc/providers/10.0.0.1:9000",
            "/rmif/services/calc/providers/not-an-address",
            "/rmif/services/echo",
            "/rmif/services/echo/providers",
            "/rmif/services/echo/providers/10.0.0.1:9000",
            "/rmif/services/lonely",
        ] {
            zxid += 1;
            assert!(tree.apply(zxid, &create(path)).outcome.is_ok(), "{path}");
        }
        let nodes = provider_nodes(&tree);
        let addr: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        assert_eq!(nodes.len(), 1, "one address, whatever else the tree holds");
        assert_eq!(
            nodes[&addr],
            [
                "/rmif/services/calc/providers/10.0.0.1:9000",
                "/rmif/services/echo/providers/10.0.0.1:9000"
            ]
        );
    }
}
