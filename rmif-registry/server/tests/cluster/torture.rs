//! The torture suite: concurrent clients on a small key space while faults drawn from a seed hit
//! the cluster; afterwards the recorded history must be linearizable, no client may have seen a
//! zxid go backwards, a watcher must have seen every acknowledged write in order, ephemeral nodes
//! must match their sessions, and every member must hold the same state.
//!
//! Short mode runs with the other tests. Long mode:
//!
//! ```text
//! RMIF_TORTURE_CYCLES=400 cargo test --release -p rmif-registry-server --test cluster torture -- --nocapture
//! ```
//!
//! `RMIF_TORTURE_SEED` replays a run; every report prints the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmif_registry::api::WatchMode;
use rmif_registry::{
    ClientOptions, Consistency, CreateMode, RegistryClient, RegistryError, SessionState,
};
use tokio::time::Instant;

use crate::linearizability::{NodeInput, NodeModel, NodeOutput, Operation, check};
use rmif_testkit::{Cluster, Settings};

const KEYS: usize = 4;
const CLIENTS: usize = 4;
const SESSIONS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillLeader,
    KillFollower,
    KillMajority,
    KillAll,
    PauseLeader,
    IsolateLeader,
    MuteLeader,
    SlowNetwork,
    CutClients,
    WipeFollower,
}

const FAULTS: [Fault; 10] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::KillMajority,
    Fault::KillAll,
    Fault::PauseLeader,
    Fault::IsolateLeader,
    Fault::MuteLeader,
    Fault::SlowNetwork,
    Fault::CutClients,
    Fault::WipeFollower,
];

struct Plan {
    seed: u64,
    cycles: usize,
    faults: Vec<Fault>,
}

impl Plan {
    fn from_env(default_cycles: usize) -> Plan {
        let seed = std::env::var("RMIF_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        let cycles = std::env::var("RMIF_TORTURE_CYCLES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_cycles);
        // RMIF_TORTURE_FAULTS=KillAll,PauseLeader restricts the faults drawn.
        let faults = match std::env::var("RMIF_TORTURE_FAULTS") {
            Ok(names) => names
                .split(',')
                .map(|name| {
                    *FAULTS
                        .iter()
                        .find(|f| format!("{f:?}").eq_ignore_ascii_case(name.trim()))
                        .unwrap_or_else(|| panic!("unknown fault {name}; known: {FAULTS:?}"))
                })
                .collect(),
            Err(_) => FAULTS.to_vec(),
        };
        Plan {
            seed,
            cycles,
            faults,
        }
    }
}

type History = Vec<Operation<NodeInput, NodeOutput>>;

/// What the workload recorded.
#[derive(Default)]
struct Record {
    /// Per key of each epoch: the operations.
    histories: BTreeMap<String, History>,
    /// Zxids of acknowledged writes.
    acked_zxids: BTreeSet<u64>,
    operations: usize,
    anomalies: Vec<String>,
}

fn to_output(result: &Result<(NodeOutput, u64), RegistryError>) -> Option<Option<NodeOutput>> {
    match result {
        Ok((output, _)) => Some(Some(output.clone())),
        Err(RegistryError::NodeExists { .. }) => Some(Some(NodeOutput::Exists)),
        Err(RegistryError::NoNode { .. }) => Some(Some(NodeOutput::NoNode)),
        Err(RegistryError::BadVersion { .. }) => Some(Some(NodeOutput::BadVersion)),
        Err(error) if error.was_not_performed() => None, // never happened: not recorded
        Err(_) => Some(None),                            // may or may not have happened
    }
}

/// One workload client: random operations on the keys of the current epoch.
async fn client_loop(
    id: usize,
    client: RegistryClient,
    epoch: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    started: Instant,
    record: Arc<Mutex<Record>>,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let mut counter = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let prefix = epoch.lock().unwrap().clone();
        let key = format!("{prefix}/k{}", rng.usize(..KEYS));
        counter += 1;
        let value = ((id as u64) << 40) | counter;
        let data = value.to_le_bytes();
        let input = match rng.u8(..100) {
            0..40 => NodeInput::Get,
            40..55 => NodeInput::Create(value),
            55..70 => NodeInput::Set(value, None),
            70..85 => NodeInput::Set(value, Some(rng.u32(..4))),
            _ => NodeInput::Delete(if rng.bool() { None } else { Some(rng.u32(..4)) }),
        };
        let seen_before = client.last_zxid();
        let call = started.elapsed().as_nanos() as u64;
        let result: Result<(NodeOutput, u64), RegistryError> = match &input {
            NodeInput::Get => client
                .get(&key, Consistency::Linearizable)
                .await
                .and_then(|node| {
                    let bytes: [u8; 8] = node.data.as_slice().try_into().map_err(|_| {
                        RegistryError::BadRequest(format!(
                            "{key} holds {} bytes, not a value",
                            node.data.len()
                        ))
                    })?;
                    Ok((
                        NodeOutput::Value(u64::from_le_bytes(bytes), node.stat.version),
                        node.zxid,
                    ))
                }),
            NodeInput::Create(_) => client
                .create(&key, &data, CreateMode::PERSISTENT)
                .await
                .map(|c| (NodeOutput::Created, c.zxid)),
            NodeInput::Set(_, version) => client
                .set(&key, &data, *version)
                .await
                .map(|w| (NodeOutput::Set(w.stat.map_or(0, |s| s.version)), w.zxid)),
            NodeInput::Delete(version) => client
                .delete(&key, *version)
                .await
                .map(|w| (NodeOutput::Deleted, w.zxid)),
        };
        let ret = started.elapsed().as_nanos() as u64;
        let mut record = record.lock().unwrap();
        if let Ok((_, zxid)) = &result {
            if *zxid < seen_before {
                record.anomalies.push(format!(
                    "client {id}: zxid went backwards ({zxid} after {seen_before}) on {key}"
                ));
            }
            if !matches!(input, NodeInput::Get) {
                record.acked_zxids.insert(*zxid);
            }
        }
        if let Err(RegistryError::BadRequest(reason)) = &result {
            record.anomalies.push(format!("client {id}: {reason}"));
        }
        let Some(output) = to_output(&result) else {
            continue;
        };
        // A read with an unknown outcome says nothing.
        if output.is_none() && input == NodeInput::Get {
            continue;
        }
        record.operations += 1;
        let determinate = output.is_some();
        record.histories.entry(key).or_default().push(Operation {
            client: id,
            call,
            ret: determinate.then_some(ret),
            input,
            output,
        });
    }
}

async fn leader(cluster: &Cluster) -> u64 {
    cluster.wait_for_leader(Duration::from_secs(30)).await
}

fn followers(cluster: &Cluster, leader: u64) -> Vec<u64> {
    (1..=cluster.members.len() as u64)
        .filter(|id| *id != leader)
        .collect()
}

/// Injects `fault`, holds it for `hold`, then heals.
async fn inject(cluster: &mut Cluster, fault: Fault, hold: Duration, rng: &mut fastrand::Rng) {
    let network = cluster.network.clone().expect("a proxied cluster");
    match fault {
        Fault::KillLeader => {
            let leader = leader(cluster).await;
            cluster.kill(leader);
            tokio::time::sleep(hold).await;
            cluster.spawn(leader);
        }
        Fault::KillFollower => {
            let leader = leader(cluster).await;
            let victim = followers(cluster, leader)[rng.usize(..2)];
            cluster.kill(victim);
            tokio::time::sleep(hold).await;
            cluster.spawn(victim);
        }
        Fault::KillMajority => {
            let leader = leader(cluster).await;
            let follower = followers(cluster, leader)[rng.usize(..2)];
            cluster.kill(leader);
            cluster.kill(follower);
            tokio::time::sleep(hold).await;
            cluster.spawn(leader);
            cluster.spawn(follower);
        }
        Fault::KillAll => {
            for id in 1..=3 {
                cluster.kill(id);
            }
            tokio::time::sleep(hold / 2).await;
            for id in 1..=3 {
                cluster.spawn(id);
            }
        }
        Fault::PauseLeader => {
            let leader = leader(cluster).await;
            cluster.pause(leader);
            tokio::time::sleep(hold).await;
            cluster.resume(leader);
        }
        Fault::IsolateLeader => {
            let leader = leader(cluster).await;
            network.isolate(leader);
            tokio::time::sleep(hold).await;
            network.heal();
        }
        Fault::MuteLeader => {
            let leader = leader(cluster).await;
            network.mute(leader);
            tokio::time::sleep(hold).await;
            network.heal();
        }
        Fault::SlowNetwork => {
            network.slow(Duration::from_millis(30 + rng.u64(..70)));
            tokio::time::sleep(hold).await;
            network.heal();
        }
        Fault::CutClients => {
            network.cut_clients(1 + rng.u64(..3));
            tokio::time::sleep(hold).await;
            network.heal();
        }
        Fault::WipeFollower => {
            let leader = leader(cluster).await;
            let victim = followers(cluster, leader)[rng.usize(..2)];
            cluster.kill(victim);
            cluster.wipe(victim);
            tokio::time::sleep(hold / 2).await;
            cluster.spawn(victim);
        }
    }
}

async fn run(plan: Plan) -> Vec<String> {
    let seed = plan.seed;
    eprintln!("torture: seed={seed} cycles={}", plan.cycles);
    let mut rng = fastrand::Rng::with_seed(seed);
    let settings = Settings {
        snapshot_entries: 300,
        proxied: true,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let options = ClientOptions {
        timeout: Duration::from_secs(3),
        attempt_timeout: Duration::from_millis(1500),
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let setup = RegistryClient::new(&cluster.servers(), options.clone());
    setup
        .create("/t", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(Record::default()));
    let epoch = Arc::new(Mutex::new("/t/e0".to_owned()));
    setup
        .create("/t/e0", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();

    // A watcher over everything the workload touches.
    let watcher_client = RegistryClient::new(&cluster.servers(), options.clone());
    let mut watcher = watcher_client
        .watch("/t", WatchMode::Recursive)
        .await
        .unwrap();
    let watched = Arc::new(Mutex::new((
        BTreeSet::<u64>::new(),
        0u64,
        Vec::<String>::new(),
    )));
    let watch_task = {
        let watched = watched.clone();
        tokio::spawn(async move {
            let mut last = 0;
            while let Some(message) = watcher.next().await {
                let mut state = watched.lock().unwrap();
                match message {
                    Ok(message) if message.is_armed() => {}
                    Ok(message) => {
                        if message.zxid <= last {
                            state
                                .2
                                .push(format!("watch zxid {} after {last}", message.zxid));
                        }
                        last = message.zxid;
                        if message.resync.is_some() {
                            state.1 = state.1.max(message.zxid);
                        }
                        state.0.insert(message.zxid);
                    }
                    Err(error) => state.2.push(format!("watch ended: {error}")),
                }
            }
        })
    };

    // Sessions holding ephemeral nodes.
    let session_client = RegistryClient::new(&cluster.servers(), options.clone());
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let session = session_client
            .open_session(Duration::from_secs(4))
            .await
            .unwrap();
        let path = format!("/t/session{s}");
        session
            .create(
                &path,
                b"",
                CreateMode {
                    ephemeral: true,
                    sequential: false,
                },
            )
            .await
            .unwrap();
        sessions.push((session, path));
    }

    let workers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client_loop(
                id,
                RegistryClient::new(&cluster.servers(), options.clone()),
                epoch.clone(),
                stop.clone(),
                started,
                record.clone(),
                seed,
            ))
        })
        .collect();

    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();
    for cycle in 1..=plan.cycles {
        tokio::time::sleep(Duration::from_millis(300 + rng.u64(..500))).await;
        let fault = plan.faults[rng.usize(..plan.faults.len())];
        let hold = Duration::from_millis(500 + rng.u64(..1500));
        *injected.entry(fault).or_default() += 1;
        inject(&mut cluster, fault, hold, &mut rng).await;
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        // New keys each cycle keep every key's history short enough to check exhaustively.
        let next = format!("/t/e{cycle}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match setup.create(&next, b"", CreateMode::PERSISTENT).await {
                Ok(_) | Err(RegistryError::NodeExists { .. }) => break,
                Err(RegistryError::NoNode { .. }) => {
                    // "/t" was created and acknowledged before anything else: it is gone only if
                    // the registry lost acknowledged writes.
                    record.lock().unwrap().anomalies.push(format!(
                        "cycle {cycle}: /t, acknowledged at the start, no longer exists"
                    ));
                    let _ = setup.create("/t", b"", CreateMode::PERSISTENT).await;
                }
                Err(error) if Instant::now() > deadline => {
                    panic!("seed {seed}: cannot start epoch {next} for 30 s: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        *epoch.lock().unwrap() = next;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    cluster.network.as_ref().unwrap().heal();
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let converged = cluster.wait_converged(Duration::from_secs(60)).await;

    let mut record = Arc::try_unwrap(record).ok().unwrap().into_inner().unwrap();
    // A final linearizable read of every key closes each history: an acknowledged write that was
    // lost shows up as a read that no order can explain.
    let keys: Vec<String> = record.histories.keys().cloned().collect();
    for key in keys {
        let call = started.elapsed().as_nanos() as u64;
        let output = match setup.get(&key, Consistency::Linearizable).await {
            Ok(node) => NodeOutput::Value(
                u64::from_le_bytes(node.data.as_slice().try_into().unwrap()),
                node.stat.version,
            ),
            Err(RegistryError::NoNode { .. }) => NodeOutput::NoNode,
            Err(error) => panic!("seed {seed}: final read of {key} failed: {error}"),
        };
        let ret = started.elapsed().as_nanos() as u64;
        record.histories.get_mut(&key).unwrap().push(Operation {
            client: usize::MAX,
            call,
            ret: Some(ret),
            input: NodeInput::Get,
            output: Some(output),
        });
    }
    for (key, history) in &record.histories {
        if let Err(explained) = check(&NodeModel, history) {
            let dump: Vec<String> = history
                .iter()
                .take(60)
                .map(|op| {
                    format!(
                        "  client {:>3} [{:>12} .. {:>12}] {:?} -> {:?}",
                        op.client as i64,
                        op.call,
                        op.ret.map_or("?".to_owned(), |r| r.to_string()),
                        op.input,
                        op.output
                    )
                })
                .collect();
            record.anomalies.push(format!(
                "{key}: not linearizable ({} operations, longest explainable prefix {}):\n{}",
                history.len(),
                explained.len(),
                dump.join("\n")
            ));
        }
    }

    // Every acknowledged write was delivered to the watcher (or covered by a resync).
    let sync = setup.sync().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let caught_up = watched.lock().unwrap().0.last().copied().unwrap_or(0) >= sync.zxid
            || record
                .acked_zxids
                .last()
                .is_none_or(|z| watched.lock().unwrap().0.contains(z));
        if caught_up || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let state = watched.lock().unwrap();
        let (seen, resynced_through, errors) = (&state.0, state.1, &state.2);
        record
            .anomalies
            .extend(errors.iter().map(|e| format!("watch: {e}")));
        let missed: Vec<_> = record
            .acked_zxids
            .iter()
            .filter(|z| **z > resynced_through && !seen.contains(z))
            .take(5)
            .collect();
        if !missed.is_empty() {
            record.anomalies.push(format!(
                "watch missed acknowledged writes at zxids {missed:?}"
            ));
        }
    }
    watch_task.abort();

    // Ephemeral nodes exist exactly while their sessions live.
    for (session, path) in &sessions {
        let exists = setup.get(path, Consistency::Linearizable).await.is_ok();
        let alive = session.state() != SessionState::Expired;
        if exists != alive {
            // The session may have just expired; its state is the client's view, so recheck once.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let exists = setup.get(path, Consistency::Linearizable).await.is_ok();
            let alive = session.state() != SessionState::Expired;
            if exists != alive {
                record.anomalies.push(format!(
                    "{path}: exists={exists} but session state is {:?}",
                    session.state()
                ));
            }
        }
    }

    let faults: Vec<String> = injected.iter().map(|(f, n)| format!("{f:?}={n}")).collect();
    println!(
        "torture summary: seed={seed} cycles={} operations={} faults=[{}] anomalies={} applied={}",
        plan.cycles,
        record.operations,
        faults.join(" "),
        record.anomalies.len(),
        converged[0].applied
    );
    record.anomalies
}

/// Short mode with the other tests (and long mode with RMIF_TORTURE_CYCLES): no anomaly allowed.
#[cfg(not(feature = "unsafe-skip-fsync"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture() {
    let plan = Plan::from_env(4);
    let seed = plan.seed;
    let anomalies = run(plan).await;
    assert!(
        anomalies.is_empty(),
        "seed {seed}: {} anomalies:\n{}",
        anomalies.len(),
        anomalies.join("\n")
    );
}

/// With the deliberately broken build (acknowledging before fsync), losing every member at once
/// must show up as anomalies:
/// `cargo test -p rmif-registry-server --features unsafe-skip-fsync --test cluster torture`.
#[cfg(feature = "unsafe-skip-fsync")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_catches_acknowledgement_before_fsync() {
    let mut plan = Plan::from_env(3);
    plan.faults = vec![Fault::KillAll];
    let anomalies = run(plan).await;
    println!(
        "the broken build produced {} anomalies, for example:",
        anomalies.len()
    );
    for anomaly in anomalies.iter().take(10) {
        println!("{}", anomaly.lines().next().unwrap_or_default());
    }
    assert!(
        !anomalies.is_empty(),
        "a build that skips fsync went unnoticed"
    );
}
