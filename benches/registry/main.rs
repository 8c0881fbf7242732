//! The registry against its peers: rmif-registry vs etcd vs ZooKeeper, each as a 3-member cluster
//! of real server processes on loopback, fsync on, measured in the same run.
//!
//! ```text
//! benches/registry.sh [OPTIONS]          # installs etcd + ZooKeeper, builds the server, runs this
//! cargo bench -p rmif-bench --bench registry [-- OPTIONS]
//!     --runs N            repeat everything N times, report medians (default 3)
//!     --duration S        seconds measured per throughput cell (default 3), after --warmup S (1)
//!     --only SYSTEM       rmif, etcd or zookeeper (or zk) (repeatable)
//!     --scenario NAME     writes, reads, watch, fanout, discovery, ephemeral, failover, stall,
//!                         restart or size (repeatable)
//!     --kills N           leader kills per run in the failover scenario (default 3)
//!     --samples N         notifications timed per run in the watch scenario (default 200)
//!     --consumers N,N     consumer counts of the discovery scenario (default 1,100,1000)
//!     --announcements N   announcements timed per run and consumer count (default 50)
//!     --ephemerals N      ephemeral-node removals timed per run (default 3)
//!     --stall-duration S  seconds the stall scenario writes (default 30)
//!     --snapshot-every N  entries between snapshots in the stall scenario, on rmif
//!                         (snapshot_entries) and etcd (--snapshot-count) alike (default 20000)
//!     --restart-nodes N   nodes written before the restart scenario's restarts (default 500000)
//!     --size-nodes N      persistent nodes of the size scenario (default 90000)
//!     --size-sessions N   sessions of the size scenario, each with an ephemeral node
//!                         (default 10000)
//!     --rmif-set K=V      extra rmif-registry member setting, e.g. snapshot_entries=1000000
//!                         (repeatable; wins over what a scenario sets)
//!     --help              these options
//! ```
//!
//! Where the servers come from (`benches/registry.sh` sets all of them):
//! `RMIF_REGISTRY_BIN` (the release `rmif-registry`; a relative path is taken from the
//! workspace root), `ETCD_BIN` (default `/usr/bin/etcd`),
//! `JAVA` (default `java`) and `ZOOKEEPER_CLASSPATH` (default Debian's
//! `/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar`).
//!
//! What is measured, per system, on a fresh cluster per run (the systems' order rotates):
//!
//! - **writes**: 16 and 64 clients, each with its own connection to one member (client i talks to
//!   member i mod 3), each creating new nodes with a 32-byte value in a loop: ops/s, p50, p99.
//! - **reads**: the same clients reading one 32-byte node, linearizable (rmif `Linearizable`,
//!   etcd's default range read, ZooKeeper `sync` + `getData`) and local (rmif `Stale`, etcd
//!   serializable, ZooKeeper plain `getData`).
//! - **watch**: a writer on one follower sets a node; a watcher on the other follower times the
//!   notification from the moment the write is issued (rmif persistent watch, etcd prefix watch,
//!   ZooKeeper persistent watch via `addWatch`).
//! - **fanout**: 200 and 1,000 watchers of one node, 10 per connection, connections spread over
//!   the members, all armed first; time from issuing one write until the last watcher saw it.
//! - **discovery**: N consumers (1, 100, 1,000), each with a client and session of its own
//!   (consumer i on member i mod 3), follow the provider list of a service of 10 providers the
//!   way each ecosystem does: rmif through `RegistryDiscovery` (one watch per service, the list
//!   then its changes, with the providers' data), ZooKeeper as Dubbo 2.x (provider URLs as child
//!   names; `getChildren` with a one-shot watch, again on every notification), etcd with a range
//!   read then a prefix watch. A provider on a follower announces itself (an ephemeral node with
//!   ~200 bytes of metadata; etcd: a key on a lease); the time until every consumer's list holds
//!   it, p50/p99/max over every announcement of every run. Also: the bytes a member sends one
//!   consumer for one added provider, at 10 and 1,000 providers, counted by a TCP proxy between
//!   them; and the members' resident memory per consumer.
//! - **ephemeral**: a separate process (this binary, re-executed with `--hold-ephemeral`) holds an
//!   ephemeral node with a 2 s session (etcd: a key on a 2 s lease it keeps alive); it is
//!   SIGKILLed and a watcher on another member times how long the node takes to disappear.
//! - **failover**: 6 writers with clients that know every member (250 ms deadline per request
//!   where the client has one) write continuously; the leader is SIGKILLed; the longest interval
//!   without any successful write is the gap. The killed member is restarted (same data) and the
//!   cluster settles before the next kill.
//!
//! Three scenarios start a cluster of their own, with their own settings, after the ones above
//! (rmif and etcd; size rmif only). They read the members' logs, which are at INFO level:
//!
//! - **stall**: members snapshot every `--snapshot-every` entries (rmif `snapshot_entries`, etcd
//!   `--snapshot-count`; both default to 100,000, too few for a run of seconds); 64 clients
//!   create nodes (32-byte values) for `--stall-duration` seconds and every completion is
//!   timed. The three longest intervals without a completed write after the first 2 s (the
//!   longest in those is reported apart), each with the events the
//!   members logged that began or were running (an rmif snapshot logs how long it took) from
//!   50 ms before it began to 50 ms after it ended (snapshots taken, sent, installed;
//!   leadership changes), the snapshots each member took, the write rate. Any failed
//!   write fails the scenario.
//! - **restart**: 64 clients create `--restart-nodes` nodes; a follower is stopped by SIGTERM
//!   (then, in the same run, by SIGKILL), a node is written on the others, and the follower is
//!   started on its data: the time from its spawn until its client port accepts a connection
//!   and until it is healthy, i.e. serves that node from its own state (rmif `Stale` read; etcd
//!   `/health` true and a serializable read). Also its data directory's size and what it
//!   logged about replaying its log. A member that is not back within 2 minutes fails it.
//! - **size**: `--size-nodes` persistent nodes (services with their providers, ~240 bytes of
//!   provider metadata each), then `--size-sessions` sessions of 10 s held by this process
//!   (heartbeats every 3.3 s), then one ephemeral node per session: each member's resident
//!   memory after each step (per node, session, ephemeral node); every member's CPU per second
//!   over 10 s with no sessions, then with only heartbeats flowing; the first snapshot of the
//!   whole state (filler writes to one node until every member logs one) and the memory once it
//!   has compacted the logs; a follower restart as in `restart`.
//!
//! Every cluster gets an untimed warm-up load first (the JVM's JIT, connection set-up). Each
//! system runs with its default timing: rmif 25 ms ticks (election after 250–500 ms), etcd
//! 100 ms heartbeats and a 1 s election timeout, ZooKeeper with `tickTime=1000` (so that its
//! minimum session timeout, two ticks, admits 2 s sessions).
//!
//! Every server binds 127.0.0.1 only and keeps its data in a temporary directory. Each server
//! runs in its own process group, which is SIGKILLed when the bench drops it (also when it panics),
//! and gets SIGKILL from the kernel if the bench itself dies (`PR_SET_PDEATHSIG`).
//!
//! Run without `--bench` (as `cargo test --benches` does) the binary only smoke-tests each
//! scenario briefly, on the systems whose servers it finds.

mod client;
mod cluster;
mod discovery;
mod etcd;
mod logs;
mod process;
mod proxy;
mod report;
mod rmif;
mod runs;
mod scenarios;
mod servers;
mod system;
mod zookeeper;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rmif_bench::options::{RunArgs, Timing, positive, seconds, selected};

/// Every value written: small, as registry entries are.
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";
/// How long any one wait in the bench may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
enum System {
    Rmif,
    Etcd,
    #[value(name = "zookeeper", alias = "zk")]
    Zk,
}

impl System {
    /// In table order.
    const ALL: [System; 3] = [System::Rmif, System::Etcd, System::Zk];

    fn name(self) -> &'static str {
        match self {
            System::Rmif => "rmif",
            System::Etcd => "etcd",
            System::Zk => "zookeeper",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Writes,
    Reads,
    Watch,
    Fanout,
    Discovery,
    Ephemeral,
    Failover,
    Stall,
    Restart,
    Size,
}

impl Scenario {
    /// In running order: failover last of those sharing a cluster, since it disturbs it; then
    /// those with a cluster of their own.
    const ALL: [Scenario; 10] = [
        Scenario::Writes,
        Scenario::Reads,
        Scenario::Watch,
        Scenario::Fanout,
        Scenario::Discovery,
        Scenario::Ephemeral,
        Scenario::Failover,
        Scenario::Stall,
        Scenario::Restart,
        Scenario::Size,
    ];

    /// Whether the scenario starts a cluster of its own (with its own settings) rather than
    /// running on the one the others share.
    fn own_cluster(self) -> bool {
        matches!(self, Scenario::Stall | Scenario::Restart | Scenario::Size)
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Writes => "writes",
            Scenario::Reads => "reads",
            Scenario::Watch => "watch",
            Scenario::Fanout => "fanout",
            Scenario::Discovery => "discovery",
            Scenario::Ephemeral => "ephemeral",
            Scenario::Failover => "failover",
            Scenario::Stall => "stall",
            Scenario::Restart => "restart",
            Scenario::Size => "size",
        }
    }
}

/// The registry against its peers: rmif-registry vs etcd vs ZooKeeper, 3 members each, on
/// loopback.
#[derive(Parser)]
#[command(name = "registry")]
struct Cli {
    #[command(flatten)]
    run: RunArgs,

    /// Measure this system only (repeatable)
    #[arg(long = "only", value_name = "SYSTEM")]
    systems: Vec<System>,

    /// Run this scenario only (repeatable)
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<Scenario>,

    /// Leader kills per run in the failover scenario
    #[arg(long, value_name = "N", default_value = "3", value_parser = positive)]
    kills: usize,

    /// Notifications timed per run in the watch scenario
    #[arg(long, value_name = "N", default_value = "200", value_parser = positive)]
    samples: usize,

    /// Consumer counts of the discovery scenario
    #[arg(
        long,
        value_name = "N,N",
        value_delimiter = ',',
        default_value = "1,100,1000",
        value_parser = positive
    )]
    consumers: Vec<usize>,

    /// Provider announcements timed per run and consumer count in the discovery scenario
    #[arg(long, value_name = "N", default_value = "50", value_parser = positive)]
    announcements: usize,

    /// Ephemeral-node removals timed per run
    #[arg(long, value_name = "N", default_value = "3", value_parser = positive)]
    ephemerals: usize,

    /// Seconds the stall scenario writes
    #[arg(long, value_name = "S", default_value = "30", value_parser = seconds)]
    stall_duration: Duration,

    /// Entries between snapshots in the stall scenario (rmif snapshot_entries, etcd
    /// --snapshot-count)
    #[arg(long, value_name = "N", default_value = "20000", value_parser = positive)]
    snapshot_every: usize,

    /// Nodes written before the restart scenario's restarts
    #[arg(long, value_name = "N", default_value = "500000", value_parser = positive)]
    restart_nodes: usize,

    /// Persistent nodes of the size scenario
    #[arg(long, value_name = "N", default_value = "90000", value_parser = positive)]
    size_nodes: usize,

    /// Sessions of the size scenario, each with an ephemeral node
    #[arg(long, value_name = "N", default_value = "10000", value_parser = positive)]
    size_sessions: usize,

    /// Extra rmif-registry member setting, e.g. snapshot_entries=1000000 (repeatable; wins over
    /// what a scenario sets)
    #[arg(long = "rmif-set", value_name = "KEY=VALUE")]
    rmif_set: Vec<String>,

    /// Be the ephemeral scenario's holder process, for SYSTEM (the bench runs itself so)
    #[arg(long, value_name = "SYSTEM", hide = true, requires_all = ["server", "path"])]
    hold_ephemeral: Option<System>,

    /// With --hold-ephemeral: the member to hold the node on
    #[arg(long, value_name = "ADDR", hide = true, requires = "hold_ephemeral")]
    server: Option<SocketAddr>,

    /// With --hold-ephemeral: the node to hold
    #[arg(long, value_name = "PATH", hide = true, requires = "hold_ephemeral")]
    path: Option<String>,
}

/// What to measure, and how much.
struct Options {
    timing: Timing,
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
    /// Leader kills per run (failover).
    kills: usize,
    /// Notifications timed per run (watch).
    samples: usize,
    /// Removals timed per run (ephemeral).
    ephemerals: usize,
    /// Changes timed per run and watcher count (fanout).
    fanout_changes: usize,
    /// What the discovery scenario measures.
    discovery: scenarios::discovery::Plan,
    /// What the stall scenario runs.
    stall: scenarios::stall::Plan,
    /// Nodes written before the restart scenario's restarts.
    restart_nodes: u64,
    /// What the size scenario builds.
    size: scenarios::size::Plan,
    /// Extra `--set KEY=VALUE` arguments of every rmif member (for experiments).
    rmif_set: Vec<String>,
}

impl From<Cli> for Options {
    fn from(cli: Cli) -> Options {
        let timing = cli.run.timing(Duration::from_millis(300));
        let options = Options {
            timing,
            systems: selected(&System::ALL, &cli.systems),
            scenarios: selected(&Scenario::ALL, &cli.scenarios),
            kills: cli.kills,
            samples: cli.samples,
            ephemerals: cli.ephemerals,
            fanout_changes: 5,
            discovery: scenarios::discovery::Plan {
                consumers: cli.consumers,
                announcements: cli.announcements,
                list_sizes: scenarios::discovery::LIST_SIZES.to_vec(),
                byte_changes: 5,
            },
            stall: scenarios::stall::Plan {
                duration: cli.stall_duration,
                snapshot_entries: cli.snapshot_every as u64,
            },
            restart_nodes: cli.restart_nodes as u64,
            size: scenarios::size::Plan {
                nodes: cli.size_nodes as u64,
                sessions: cli.size_sessions,
                session_timeout: Duration::from_secs(10),
                cpu_window: Duration::from_secs(10),
                snapshot_entries: None,
            },
            rmif_set: cli.rmif_set,
        };
        if timing.smoke {
            // Every scenario once, just enough to see that it works.
            Options {
                kills: 1,
                samples: 10,
                ephemerals: 1,
                fanout_changes: 1,
                discovery: scenarios::discovery::Plan {
                    consumers: vec![1, 20],
                    announcements: 2,
                    list_sizes: vec![10, 100],
                    byte_changes: 1,
                },
                stall: scenarios::stall::Plan {
                    duration: Duration::from_secs(2),
                    snapshot_entries: 1000,
                },
                restart_nodes: 2000,
                size: scenarios::size::Plan {
                    nodes: 1000,
                    sessions: 100,
                    session_timeout: Duration::from_secs(10),
                    cpu_window: Duration::from_secs(1),
                    snapshot_entries: Some(500),
                },
                ..options
            }
        } else {
            options
        }
    }
}

fn main() {
    let cli = Cli::parse();
    process::raise_fd_limit();
    match cli.hold_ephemeral {
        // clap has checked that --server and --path came with it.
        Some(system) => scenarios::ephemeral::hold(
            system,
            cli.server.expect("--server"),
            &cli.path.expect("--path"),
        ),
        None => {
            runs::bench(Options::from(cli));
            cluster::remove_finished();
        }
    }
}
