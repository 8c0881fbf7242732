//! The registry against its peers: rmif-registry vs etcd vs ZooKeeper, each as a 3-member cluster
//! of real server processes on loopback, fsync on, measured in the same run.
//!
//! ```text
//! benches/registry.sh [OPTIONS]          # installs etcd + ZooKeeper, builds the server, runs this
//! cargo bench -p rmif-bench --bench registry [-- OPTIONS]
//!     --runs N            repeat everything N times, report medians (default 3)
//!     --duration S        seconds measured per throughput cell (default 3), after --warmup S (1)
//!     --only SYSTEM       rmif, etcd or zookeeper (or zk) (repeatable)
//!     --scenario NAME     writes, reads, watch, fanout, discovery, ephemeral or failover
//!                         (repeatable)
//!     --kills N           leader kills per run in the failover scenario (default 3)
//!     --samples N         notifications timed per run in the watch scenario (default 200)
//!     --consumers N,N     consumer counts of the discovery scenario (default 1,100,1000)
//!     --announcements N   announcements timed per run and consumer count (default 50)
//!     --ephemerals N      ephemeral-node removals timed per run (default 3)
//!     --rmif-set K=V      extra rmif-registry member setting, e.g. snapshot_entries=1000000
//!                         (repeatable)
//!     --help              these options
//! ```
//!
//! Where the servers come from (`benches/registry.sh` sets all of them):
//! `RMIF_REGISTRY_BIN` (the release `rmif-registry`), `ETCD_BIN` (default `/usr/bin/etcd`),
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
use rmif_bench::options::{RunArgs, Timing, positive, selected};

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
}

impl Scenario {
    /// In running order: failover last, since it disturbs the cluster.
    const ALL: [Scenario; 7] = [
        Scenario::Writes,
        Scenario::Reads,
        Scenario::Watch,
        Scenario::Fanout,
        Scenario::Discovery,
        Scenario::Ephemeral,
        Scenario::Failover,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Writes => "writes",
            Scenario::Reads => "reads",
            Scenario::Watch => "watch",
            Scenario::Fanout => "fanout",
            Scenario::Discovery => "discovery",
            Scenario::Ephemeral => "ephemeral",
            Scenario::Failover => "failover",
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

    /// Extra rmif-registry member setting, e.g. snapshot_entries=1000000 (repeatable)
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
        None => runs::bench(Options::from(cli)),
    }
}
