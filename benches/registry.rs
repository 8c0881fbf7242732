//! The registry against its peers: rmif-registry vs etcd vs ZooKeeper, each as a 3-member cluster
//! of real server processes on loopback, fsync on, measured in the same run.
//!
//! ```text
//! benches/registry.sh [OPTIONS]          # installs etcd + ZooKeeper, builds the server, runs this
//! cargo bench -p rmif-bench --bench registry [-- OPTIONS]
//!     --runs N            repeat everything N times, report medians (default 3)
//!     --duration S        seconds measured per throughput cell (default 3), after --warmup S (1)
//!     --only SYSTEM       rmif, etcd or zookeeper (repeatable)
//!     --scenario NAME     writes, reads, watch, fanout, ephemeral or failover (repeatable)
//!     --kills N           leader kills per run in the failover scenario (default 3)
//!     --samples N         notifications timed per run in the watch scenario (default 200)
//!     --ephemerals N      ephemeral-node removals timed per run (default 3)
//!     --rmif-set K=V      extra rmif-registry member setting, e.g. snapshot_entries=1000000
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

#[path = "args.rs"]
mod args;

use args::{parse_positive, parse_seconds};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use rmif_registry::ChangeKind;
use rmif_registry::api::WatchMode;
use rmif_registry::{ClientOptions, Consistency, CreateMode, RegistryClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use zookeeper_client as zk;

/// Every value written: small, as registry entries are.
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";
/// Client counts of the throughput scenarios.
const CLIENTS: [usize; 2] = [16, 64];
/// Watcher counts of the fan-out scenario, and watchers per connection there.
const FANOUT: [usize; 2] = [200, 1000];
const WATCHERS_PER_CONNECTION: usize = 10;
/// Writers in the failover scenario, and how long they write before the kill.
const FAILOVER_WRITERS: usize = 6;
const FAILOVER_STEADY: Duration = Duration::from_millis(1500);
/// The ephemeral node's session timeout (etcd: lease TTL), and the project's allowance on top.
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any one wait in the bench may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Systems and scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum System {
    Rmif,
    Etcd,
    Zk,
}

impl System {
    const ALL: [System; 3] = [System::Rmif, System::Etcd, System::Zk];

    fn name(self) -> &'static str {
        match self {
            System::Rmif => "rmif",
            System::Etcd => "etcd",
            System::Zk => "zookeeper",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name || (name == "zk" && *s == System::Zk))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Writes,
    Reads,
    Watch,
    Fanout,
    Ephemeral,
    Failover,
}

impl Scenario {
    /// In running order: failover last, since it disturbs the cluster.
    const ALL: [Scenario; 6] = [
        Scenario::Writes,
        Scenario::Reads,
        Scenario::Watch,
        Scenario::Fanout,
        Scenario::Ephemeral,
        Scenario::Failover,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Writes => "writes",
            Scenario::Reads => "reads",
            Scenario::Watch => "watch",
            Scenario::Fanout => "fanout",
            Scenario::Ephemeral => "ephemeral",
            Scenario::Failover => "failover",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

struct Options {
    runs: usize,
    warmup: Duration,
    duration: Duration,
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
    kills: usize,
    samples: usize,
    ephemerals: usize,
    fanout_changes: usize,
    /// Extra `--set KEY=VALUE` arguments of every rmif member (for experiments).
    rmif_set: Vec<String>,
    smoke: bool,
}

enum Mode {
    Bench(Options),
    /// The child process of the ephemeral scenario.
    HoldEphemeral {
        system: System,
        server: SocketAddr,
        path: String,
    },
}

fn parse_args() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options {
        runs: 3,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(3),
        systems: Vec::new(),
        scenarios: Vec::new(),
        kills: 3,
        samples: 200,
        ephemerals: 3,
        fanout_changes: 5,
        rmif_set: Vec::new(),
        // Cargo passes `--bench` to harness-less benches under `cargo bench` only.
        smoke: !args.iter().any(|a| a == "--bench"),
    };
    let mut hold: Option<System> = None;
    let (mut server, mut path) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--hold-ephemeral" => hold = Some(parse_system(&value(arg)?)?),
            "--server" => server = Some(value(arg)?.parse().map_err(|e| format!("{e}"))?),
            "--path" => path = Some(value(arg)?),
            "--only" => options.systems.push(parse_system(&value(arg)?)?),
            "--scenario" => {
                let name = value(arg)?;
                let scenario =
                    Scenario::ALL
                        .into_iter()
                        .find(|s| s.name() == name)
                        .ok_or(format!(
                            "unknown scenario {name}; one of: {}",
                            Scenario::ALL.map(Scenario::name).join(", ")
                        ))?;
                options.scenarios.push(scenario);
            }
            "--runs" => options.runs = parse_positive(&value(arg)?, arg)?,
            "--kills" => options.kills = parse_positive(&value(arg)?, arg)?,
            "--samples" => options.samples = parse_positive(&value(arg)?, arg)?,
            "--ephemerals" => options.ephemerals = parse_positive(&value(arg)?, arg)?,
            "--duration" => options.duration = parse_seconds(&value(arg)?)?,
            "--warmup" => options.warmup = parse_seconds(&value(arg)?)?,
            "--rmif-set" => options.rmif_set.push(value(arg)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(system) = hold {
        return Ok(Mode::HoldEphemeral {
            system,
            server: server.ok_or("--hold-ephemeral needs --server")?,
            path: path.ok_or("--hold-ephemeral needs --path")?,
        });
    }
    if options.systems.is_empty() {
        options.systems = System::ALL.to_vec();
    }
    // Keep the running order whatever order the flags came in.
    options.scenarios = if options.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        Scenario::ALL
            .into_iter()
            .filter(|s| options.scenarios.contains(s))
            .collect()
    };
    if options.smoke {
        options.runs = 1;
        options.warmup = Duration::from_millis(100);
        options.duration = Duration::from_millis(300);
        options.kills = 1;
        options.samples = 10;
        options.ephemerals = 1;
        options.fanout_changes = 1;
    }
    Ok(Mode::Bench(options))
}

fn parse_system(name: &str) -> Result<System, String> {
    System::from_name(name).ok_or(format!(
        "unknown system {name}; one of: rmif, etcd, zookeeper"
    ))
}

fn main() {
    match parse_args() {
        Ok(Mode::Bench(options)) => bench(options),
        Ok(Mode::HoldEphemeral {
            system,
            server,
            path,
        }) => hold_ephemeral(system, server, &path),
        Err(error) => {
            eprintln!("registry bench: {error}");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Where the servers are
// ---------------------------------------------------------------------------------------------

/// The programs that run each system's members.
struct Servers {
    rmif: Option<PathBuf>,
    etcd: Option<PathBuf>,
    java: PathBuf,
    zk_classpath: Option<String>,
    /// Extra settings of every rmif member (`--rmif-set`).
    rmif_set: Vec<String>,
}

impl Servers {
    fn from_env() -> Servers {
        let existing = |path: PathBuf| path.is_file().then_some(path);
        let rmif = std::env::var_os("RMIF_REGISTRY_BIN")
            .map(PathBuf::from)
            .and_then(existing);
        let etcd = existing(
            std::env::var_os("ETCD_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
        );
        let java = std::env::var_os("JAVA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("java"));
        // Debian's jar lists its dependencies in its manifest; slf4j-simple makes it log.
        let zk_classpath = std::env::var("ZOOKEEPER_CLASSPATH").unwrap_or_else(|_| {
            "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar".to_owned()
        });
        let zk_classpath = zk_classpath
            .split(':')
            .all(|jar| Path::new(jar).is_file())
            .then_some(zk_classpath);
        Servers {
            rmif,
            etcd,
            java,
            zk_classpath,
            rmif_set: Vec::new(),
        }
    }

    fn available(&self, system: System) -> Result<(), &'static str> {
        match system {
            System::Rmif if self.rmif.is_none() => {
                Err("set RMIF_REGISTRY_BIN to the release rmif-registry binary")
            }
            System::Etcd if self.etcd.is_none() => Err("no etcd binary (set ETCD_BIN)"),
            System::Zk if self.zk_classpath.is_none() => {
                Err("no ZooKeeper jars (set ZOOKEEPER_CLASSPATH)")
            }
            _ => Ok(()),
        }
    }

    /// One line naming each system's version, for the report.
    fn versions(&self) -> String {
        let first_line = |program: &Path, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .and_then(|out| {
                    let text = String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr);
                    text.lines().next().map(|l| l.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let etcd = self
            .etcd
            .as_ref()
            .map_or("absent".to_owned(), |etcd| first_line(etcd, &["--version"]));
        let zk = self
            .zk_classpath
            .as_ref()
            .map_or("absent".to_owned(), |cp| {
                first_line(
                    &self.java,
                    &["-cp", cp, "org.apache.zookeeper.version.VersionInfoMain"],
                )
            });
        let java = first_line(&self.java, &["-version"]);
        format!("{etcd}; ZooKeeper {zk} on {java}")
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

/// How to start one member (again, after a kill).
#[derive(Clone)]
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
}

/// A running process in its own process group; dropping it SIGKILLs the whole group.
struct Process {
    child: Child,
}

/// Spawns `command` in a new process group that the kernel SIGKILLs if this process dies.
/// Call from the main thread only: the parent-death signal fires when the *spawning thread*
/// exits, and only the main thread lives as long as the bench.
fn spawn_grouped(mut command: Command) -> std::io::Result<Child> {
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

impl Process {
    fn start(launch: &Launch, log: &Path) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log file");
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let child = spawn_grouped(command)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launch.program.display()));
        Process { child }
    }

    /// SIGKILL to the process group, then reap.
    fn kill(&mut self) {
        // SAFETY: kill(2) on the group this bench created; no memory is involved.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `count` distinct free loopback ports: all bound at once (so that none is handed out twice),
/// then released for the members to bind moments later.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound address").port())
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A 3-member cluster of one system in a temporary directory.
struct Cluster {
    system: System,
    /// Each member's client address.
    clients: Vec<SocketAddr>,
    launches: Vec<Launch>,
    running: Vec<Option<Process>>,
    dir: Option<tempfile::TempDir>,
    /// Keep the logs and data when the cluster goes (a scenario failed on it).
    keep_files: bool,
}

impl Cluster {
    fn start(system: System, servers: &Servers) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("registry-bench-{}-", system.name()))
            .tempdir()
            .expect("temporary directory");
        // Per member: a client port, a peer port and (ZooKeeper) an election port.
        let ports = free_ports(9);
        let clients: Vec<SocketAddr> = ports[0..3].iter().map(|p| loopback(*p)).collect();
        let (peers, elections) = (&ports[3..6], &ports[6..9]);
        let launches = match system {
            System::Rmif => rmif_launches(servers, dir.path(), &clients, peers),
            System::Etcd => etcd_launches(servers, dir.path(), &clients, peers),
            System::Zk => zk_launches(servers, dir.path(), &clients, peers, elections),
        };
        let mut cluster = Cluster {
            system,
            clients,
            launches,
            running: (0..3).map(|_| None).collect(),
            dir: Some(dir),
            keep_files: false,
        };
        for member in 0..3 {
            cluster.spawn(member);
        }
        cluster
    }

    fn spawn(&mut self, member: usize) {
        let log = self
            .dir
            .as_ref()
            .expect("cluster directory")
            .path()
            .join(format!("member-{member}.log"));
        self.running[member] = Some(Process::start(&self.launches[member], &log));
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut process) = self.running[member].take() {
            process.kill();
        }
    }

    /// Panics (naming the log) if a member this bench did not kill has exited.
    fn check_alive(&mut self) {
        for member in 0..3 {
            let Some(process) = self.running[member].as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = process.child.try_wait() {
                self.keep_files = true;
                let log = self
                    .dir
                    .as_ref()
                    .map(|d| d.path().join(format!("member-{member}.log")));
                let tail = log
                    .as_ref()
                    .and_then(|log| std::fs::read_to_string(log).ok())
                    .map(|text| text.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
                    .unwrap_or_default();
                panic!(
                    "{} member {} exited by itself ({status}): {tail}",
                    self.system.name(),
                    member + 1
                );
            }
        }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..3).filter(|m| self.running[*m].is_some())
    }

    /// Waits until every running member answers and exactly one of them leads; returns it.
    async fn wait_ready(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.check_alive();
            let mut states = Vec::new();
            for member in self.running() {
                states.push((
                    member,
                    member_state(self.system, self.clients[member]).await,
                ));
            }
            let answered = states.iter().all(|(_, s)| s.is_some());
            let leaders: Vec<usize> = states
                .iter()
                .filter(|(_, s)| *s == Some(Role::Leader))
                .map(|(m, _)| *m)
                .collect();
            if answered && leaders.len() == 1 {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "{} cluster not ready after 90 s: {states:?} (logs in {})",
                self.system.name(),
                self.dir
                    .as_ref()
                    .map_or(Path::new("?"), |d| d.path())
                    .display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in 0..3 {
            self.kill(member);
        }
        if std::thread::panicking() || self.keep_files {
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster logs and data kept in {}", dir.keep().display());
            }
        }
    }
}

fn rmif_launches(
    servers: &Servers,
    dir: &Path,
    clients: &[SocketAddr],
    peers: &[u16],
) -> Vec<Launch> {
    let peer_list = (0..3)
        .map(|i| format!("{}={}", i + 1, loopback(peers[i])))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let config = dir.join(format!("rmif-{}.properties", i + 1));
            // Default Raft timing (25 ms ticks, election after 10, heartbeat every 2).
            std::fs::write(
                &config,
                format!(
                    "node_id={}\npeers={peer_list}\nclient_addr={}\ndata_dir={}\n",
                    i + 1,
                    clients[i],
                    dir.join(format!("rmif-{}", i + 1)).display()
                ),
            )
            .expect("write rmif member configuration");
            Launch {
                program: servers.rmif.clone().expect("rmif-registry binary"),
                args: std::iter::once(config.into())
                    .chain(
                        servers
                            .rmif_set
                            .iter()
                            .flat_map(|kv| [OsString::from("--set"), OsString::from(kv)]),
                    )
                    .collect(),
                env: vec![("RMIF_LOG".to_owned(), "warn".to_owned())],
            }
        })
        .collect()
}

fn etcd_launches(
    servers: &Servers,
    dir: &Path,
    clients: &[SocketAddr],
    peers: &[u16],
) -> Vec<Launch> {
    let cluster = (0..3)
        .map(|i| format!("m{}=http://{}", i + 1, loopback(peers[i])))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let client_url = format!("http://{}", clients[i]);
            let peer_url = format!("http://{}", loopback(peers[i]));
            let data = dir.join(format!("etcd-{}", i + 1));
            // Default timing (100 ms heartbeat, 1 s election timeout) and fsync.
            let args: Vec<String> = vec![
                format!("--name=m{}", i + 1),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={cluster}"),
                "--initial-cluster-token=rmif-bench".to_owned(),
                "--initial-cluster-state=new".to_owned(),
                "--logger=zap".to_owned(),
                "--log-outputs=stderr".to_owned(),
                "--log-level=warn".to_owned(),
            ];
            Launch {
                program: servers.etcd.clone().expect("etcd binary"),
                args: args.into_iter().map(OsString::from).collect(),
                env: Vec::new(),
            }
        })
        .collect()
}

fn zk_launches(
    servers: &Servers,
    dir: &Path,
    clients: &[SocketAddr],
    peers: &[u16],
    elections: &[u16],
) -> Vec<Launch> {
    let ensemble: String = (0..3)
        .map(|i| format!("server.{}=127.0.0.1:{}:{}\n", i + 1, peers[i], elections[i]))
        .collect();
    let classpath = servers.zk_classpath.clone().expect("ZooKeeper classpath");
    (0..3)
        .map(|i| {
            let data = dir.join(format!("zk-{}", i + 1));
            std::fs::create_dir_all(&data).expect("ZooKeeper data directory");
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("myid");
            let config = dir.join(format!("zoo-{}.cfg", i + 1));
            // tickTime 1000 ms so that minSessionTimeout (2 ticks) admits the 2 s sessions of
            // the ephemeral scenario; forceSync stays at its default (yes). Four-letter words
            // for `srvr`; no admin HTTP server (it would bind 0.0.0.0:8080); no per-address
            // connection cap, since every client here comes from 127.0.0.1.
            std::fs::write(
                &config,
                format!(
                    "tickTime=1000\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
                     clientPort={}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
                     4lw.commands.whitelist=*\nadmin.enableServer=false\n{ensemble}",
                    data.display(),
                    clients[i].port(),
                ),
            )
            .expect("write zoo.cfg");
            let args: Vec<OsString> = [
                "-Xmx1000m".into(),
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn".into(),
                "-cp".into(),
                OsString::from(&classpath),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain".into(),
                config.into(),
            ]
            .into();
            Launch {
                program: servers.java.clone(),
                args,
                env: Vec::new(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Leaders
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
}

/// What a member says it is, if it answers and knows a leader.
async fn member_state(system: System, addr: SocketAddr) -> Option<Role> {
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        match system {
            System::Rmif => {
                let options = ClientOptions {
                    timeout: Duration::from_secs(1),
                    attempt_timeout: Duration::from_secs(1),
                    connect_timeout: Duration::from_millis(500),
                };
                let status = RegistryClient::new(&[addr], options)
                    .member_status(addr)
                    .await
                    .ok()?;
                match (status.role.as_str(), status.leader) {
                    ("leader", _) => Some(Role::Leader),
                    (_, 0) => None,
                    _ => Some(Role::Follower),
                }
            }
            System::Etcd => {
                let mut client = etcd_connect(&[addr], Duration::from_secs(1)).await.ok()?;
                let status = client.status().await.ok()?;
                let me = status.header()?.member_id();
                match status.leader() {
                    0 => None,
                    leader if leader == me => Some(Role::Leader),
                    _ => Some(Role::Follower),
                }
            }
            System::Zk => {
                let srvr = four_letter_word(addr, "srvr").await.ok()?;
                let mode = srvr.lines().find_map(|l| l.strip_prefix("Mode: "))?;
                match mode.trim() {
                    "leader" => Some(Role::Leader),
                    "follower" => Some(Role::Follower),
                    _ => None,
                }
            }
        }
    })
    .await;
    answer.ok().flatten()
}

/// ZooKeeper's admin commands: send four letters, read until the server closes.
async fn four_letter_word(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(word.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

// ---------------------------------------------------------------------------------------------
// One client connection, whatever the system
// ---------------------------------------------------------------------------------------------

/// A client with its own connection(s). Cloning shares them (for several watches per
/// connection). An enum rather than a trait object: the harness adds no boxing to any system.
#[derive(Clone)]
enum Conn {
    Rmif(RegistryClient),
    // Boxed: etcd's client is 3.5 KB, the others are a pointer or two.
    Etcd(Box<etcd_client::Client>),
    Zk(zk::Client),
}

async fn etcd_connect(
    members: &[SocketAddr],
    timeout: Duration,
) -> Result<etcd_client::Client, String> {
    let urls: Vec<String> = members.iter().map(|a| format!("http://{a}")).collect();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(timeout);
    etcd_client::Client::connect(urls, Some(options))
        .await
        .map_err(|e| format!("etcd connect: {e}"))
}

async fn zk_connect(members: &[SocketAddr], session: Duration) -> Result<zk::Client, String> {
    let servers = members
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",");
    zk::Client::connector()
        .with_session_timeout(session)
        .connect(&servers)
        .await
        .map_err(|e| format!("zookeeper connect: {e}"))
}

impl Conn {
    /// A client of `members` (failing over among them where the client does), starting with the
    /// first. Every op has 10 s at most, as rmif's default.
    async fn connect(system: System, members: &[SocketAddr]) -> Result<Conn, String> {
        Ok(match system {
            System::Rmif => {
                let client = RegistryClient::new(members, ClientOptions::default());
                client.prefer(members[0]);
                Conn::Rmif(client)
            }
            System::Etcd => Conn::Etcd(Box::new(
                etcd_connect(members, Duration::from_secs(10)).await?,
            )),
            System::Zk => Conn::Zk(zk_connect(members, Duration::from_secs(10)).await?),
        })
    }

    /// A client of the one member at `member`.
    async fn to(system: System, member: SocketAddr) -> Result<Conn, String> {
        Self::connect(system, &[member]).await
    }

    /// Whether this client can still be used (a ZooKeeper session can expire for good).
    fn usable(&self) -> bool {
        match self {
            Conn::Zk(client) => !client.state().is_terminated(),
            _ => true,
        }
    }

    async fn create(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        match self {
            Conn::Rmif(c) => c
                .create(path, value, CreateMode::PERSISTENT)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Conn::Etcd(c) => c
                .put(path, value, None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Conn::Zk(c) => c
                .create(path, value, &zk_persistent())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    async fn set(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        match self {
            Conn::Rmif(c) => c
                .set(path, value, None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Conn::Etcd(c) => c
                .put(path, value, None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Conn::Zk(c) => c
                .set_data(path, value, None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    /// Reads a node's value: linearizable, or from the member's local state.
    async fn read(&mut self, path: &str, linearizable: bool) -> Result<Vec<u8>, String> {
        match self {
            Conn::Rmif(c) => {
                let consistency = if linearizable {
                    Consistency::Linearizable
                } else {
                    Consistency::Stale
                };
                c.get(path, consistency)
                    .await
                    .map(|d| d.data)
                    .map_err(|e| e.to_string())
            }
            Conn::Etcd(c) => {
                let options =
                    (!linearizable).then(|| etcd_client::GetOptions::new().with_serializable());
                let response = c.get(path, options).await.map_err(|e| e.to_string())?;
                response
                    .kvs()
                    .first()
                    .map(|kv| kv.value().to_vec())
                    .ok_or_else(|| format!("{path}: no such key"))
            }
            Conn::Zk(c) => {
                // A ZooKeeper read is served by the member's local state; `sync` first makes it
                // reflect every write committed before (the documented recipe).
                if linearizable {
                    c.sync(path).await.map_err(|e| e.to_string())?;
                }
                c.get_data(path)
                    .await
                    .map(|(data, _)| data)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Creates `path` (and, for the trees, nothing above it) unless it exists.
    async fn ensure(&mut self, path: &str) -> Result<(), String> {
        match self.create(path, VALUE).await {
            Err(e) if e.contains("exists") => Ok(()),
            other => other,
        }
    }

    /// Follows every change of `path`; returns once the watch is armed.
    async fn watch(&mut self, path: &str) -> Result<Watch, String> {
        let feed = self.feed(path).await?;
        Ok(Watch {
            feed,
            _conn: self.clone(),
        })
    }

    async fn feed(&mut self, path: &str) -> Result<Feed, String> {
        match self {
            Conn::Rmif(c) => {
                let mut watcher = c
                    .watch(path, WatchMode::Persistent)
                    .await
                    .map_err(|e| e.to_string())?;
                match watcher.next().await {
                    Some(Ok(message)) if message.is_armed() => Ok(Feed::Rmif(watcher)),
                    other => Err(format!("rmif watch: expected armed, got {other:?}")),
                }
            }
            Conn::Etcd(c) => {
                let options = etcd_client::WatchOptions::new().with_prefix();
                let mut stream = c
                    .watch(path, Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
                match stream.message().await {
                    Ok(Some(response)) if response.created() => Ok(Feed::Etcd(stream)),
                    other => Err(format!("etcd watch: expected created, got {other:?}")),
                }
            }
            Conn::Zk(c) => c
                .watch(path, zk::AddWatchMode::Persistent)
                .await
                .map(Feed::Zk)
                .map_err(|e| e.to_string()),
        }
    }
}

fn zk_persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// An armed watch. It keeps its client: a ZooKeeper session ends with its last client handle.
struct Watch {
    feed: Feed,
    _conn: Conn,
}

enum Feed {
    Rmif(rmif_registry::Watcher),
    Etcd(etcd_client::WatchStream),
    Zk(zk::PersistentWatcher),
}

/// What a watcher saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Updated,
    Deleted,
}

impl Watch {
    /// The next change of the watched node (skipping progress and connection messages).
    async fn next_change(&mut self) -> Result<Change, String> {
        loop {
            match &mut self.feed {
                Feed::Rmif(watcher) => match watcher.next().await {
                    None => return Err("rmif watch ended".to_owned()),
                    Some(Err(e)) => return Err(format!("rmif watch: {e}")),
                    Some(Ok(message)) if message.resync.is_some() => {
                        return Err("rmif watch resynchronized instead of delivering".to_owned());
                    }
                    Some(Ok(message)) if message.events.is_empty() => continue,
                    Some(Ok(message)) => {
                        let deleted = message.events.iter().any(|e| e.kind == ChangeKind::Deleted);
                        return Ok(if deleted {
                            Change::Deleted
                        } else {
                            Change::Updated
                        });
                    }
                },
                Feed::Etcd(stream) => match stream.message().await {
                    Ok(None) => return Err("etcd watch ended".to_owned()),
                    Err(e) => return Err(format!("etcd watch: {e}")),
                    Ok(Some(r)) if r.canceled() => return Err("etcd watch canceled".to_owned()),
                    Ok(Some(r)) if r.events().is_empty() => continue,
                    Ok(Some(r)) => {
                        let deleted = r
                            .events()
                            .iter()
                            .any(|e| e.event_type() == etcd_client::EventType::Delete);
                        return Ok(if deleted {
                            Change::Deleted
                        } else {
                            Change::Updated
                        });
                    }
                },
                Feed::Zk(watcher) => {
                    let event = watcher.changed().await;
                    match event.event_type {
                        zk::EventType::Session if event.session_state.is_terminated() => {
                            return Err(format!("zookeeper session {:?}", event.session_state));
                        }
                        zk::EventType::Session => continue,
                        zk::EventType::NodeDeleted => return Ok(Change::Deleted),
                        _ => return Ok(Change::Updated),
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput and latency (writes, reads)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Create,
    Read { linearizable: bool },
}

impl Load {
    fn key(self, clients: usize) -> String {
        let name = match self {
            Load::Create => "write",
            Load::Read { linearizable: true } => "linread",
            Load::Read {
                linearizable: false,
            } => "staleread",
        };
        format!("{name}/{clients}")
    }
}

/// The figures of one throughput cell.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

struct Tally {
    latencies: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Throughput cells started so far.
static CELLS: AtomicU64 = AtomicU64::new(0);

fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// `clients` clients, client i on member i mod 3, each looping `load` for the warm-up and the
/// measured window. Connections are made before the clock starts.
async fn throughput(cluster: &Cluster, load: Load, clients: usize, options: &Options) -> Sample {
    let conns =
        join_all((0..clients).map(|i| Conn::to(cluster.system, cluster.clients[i % 3]))).await;
    // Node names are unique across cells (and runs, which use fresh clusters anyway).
    let cell = CELLS.fetch_add(1, Ordering::Relaxed);
    let from = Instant::now() + options.warmup;
    let until = from + options.duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let conn = conn.unwrap_or_else(|e| panic!("client {i}: {e}"));
            tokio::spawn(client_loop(conn, load, format!("{cell}-{i}"), from, until))
        })
        .collect();
    let mut latencies = new_histogram();
    let (mut ops, mut errors, mut first_error) = (0, 0, None);
    for task in tasks {
        let tally = task.await.expect("client task panicked");
        latencies.add(&tally.latencies).expect("equal bounds");
        ops += tally.ops;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    if let Some(error) = first_error {
        eprintln!("    {errors} operations failed, the first with: {error}");
    }
    Sample {
        ops_per_sec: ops as f64 / options.duration.as_secs_f64(),
        p50_ms: latencies.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    }
}

async fn client_loop(
    mut conn: Conn,
    load: Load,
    name: String,
    from: Instant,
    until: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies: new_histogram(),
        ops: 0,
        errors: 0,
        first_error: None,
    };
    let mut seq = 0u64;
    loop {
        let start = Instant::now();
        if start >= until {
            return tally;
        }
        seq += 1;
        let outcome = match load {
            Load::Create => conn.create(&format!("/bench/w/{name}-{seq}"), VALUE).await,
            Load::Read { linearizable } => {
                conn.read("/bench/r", linearizable).await.and_then(|value| {
                    (value == VALUE)
                        .then_some(())
                        .ok_or("read a wrong value".to_owned())
                })
            }
        };
        let elapsed = start.elapsed();
        if start < from {
            continue;
        }
        match outcome {
            Ok(()) => {
                tally.ops += 1;
                tally
                    .latencies
                    .saturating_record(elapsed.as_micros() as u64);
            }
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(error);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watches: notification latency and fan-out
// ---------------------------------------------------------------------------------------------

/// Untimed load before the first measurement, so that no system is measured cold (the JVM's
/// JIT compiler, connection pools, the servers' first allocations).
async fn prime(cluster: &Cluster, options: &Options) {
    for load in [Load::Create, Load::Read { linearizable: true }] {
        throughput(cluster, load, CLIENTS[0], options).await;
    }
}

/// Two members that are not the leader.
fn followers(leader: usize) -> (usize, usize) {
    ((leader + 1) % 3, (leader + 2) % 3)
}

/// A writer on one follower sets `/bench/watch` again and again; a watcher on the other
/// follower times each notification from the moment the write was issued. Returns µs.
async fn watch_latency(cluster: &Cluster, leader: usize, samples: usize) -> Histogram<u64> {
    let (writer_member, watcher_member) = followers(leader);
    let mut writer = Conn::to(cluster.system, cluster.clients[writer_member])
        .await
        .expect("writer");
    let mut watch = Conn::to(cluster.system, cluster.clients[watcher_member])
        .await
        .expect("watcher")
        .watch("/bench/watch")
        .await
        .expect("arm the watch");
    let mut latencies = new_histogram();
    for i in 0..samples {
        let value = format!("{i:032}");
        let start = Instant::now();
        let (written, seen) = tokio::join!(
            writer.set("/bench/watch", value.as_bytes()),
            tokio::time::timeout(HANG, watch.next_change())
        );
        written.expect("watched write");
        let seen = seen.unwrap_or_else(|_| panic!("no notification within {HANG:?}"));
        assert_eq!(seen, Ok(Change::Updated), "unexpected notification");
        latencies.saturating_record(start.elapsed().as_micros() as u64);
    }
    latencies
}

/// `watchers` watchers of `/bench/fan`, 10 per connection, connections spread over the members,
/// all armed before the first change. Returns how long each change took to reach every watcher.
async fn fanout(cluster: &Cluster, leader: usize, watchers: usize, changes: usize) -> Vec<f64> {
    let connections = watchers.div_ceil(WATCHERS_PER_CONNECTION);
    let conns: Vec<Conn> =
        join_all((0..connections).map(|i| Conn::to(cluster.system, cluster.clients[i % 3])))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("watcher connections");
    // Arm every watcher, a connection's watches one after another, connections concurrently.
    let armed = join_all(conns.iter().enumerate().map(|(c, conn)| {
        let count = (watchers - c).div_ceil(connections);
        let conn = conn.clone();
        async move {
            let mut watches = Vec::new();
            for _ in 0..count {
                watches.push(conn.clone().watch("/bench/fan").await?);
            }
            Ok::<_, String>(watches)
        }
    }))
    .await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (id, mut watch) in armed
        .into_iter()
        .flat_map(|w| w.expect("arm a watcher"))
        .enumerate()
    {
        let seen_tx = seen_tx.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0.. {
                let change = watch.next_change().await;
                let _ = seen_tx.send((id, round, change, Instant::now()));
            }
        }));
    }
    assert_eq!(tasks.len(), watchers);
    let mut writer = Conn::to(cluster.system, cluster.clients[followers(leader).0])
        .await
        .expect("writer");
    let mut times = Vec::new();
    for round in 0..changes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        writer
            .set("/bench/fan", format!("{round:032}").as_bytes())
            .await
            .expect("fan-out write");
        let mut last = start;
        for _ in 0..watchers {
            let (id, seen_round, change, at) = tokio::time::timeout(HANG, seen.recv())
                .await
                .unwrap_or_else(|_| panic!("not every watcher was notified within {HANG:?}"))
                .expect("watcher tasks alive");
            assert_eq!(
                (seen_round, change),
                (round, Ok(Change::Updated)),
                "watcher {id} saw something else"
            );
            last = last.max(at);
        }
        times.push((last - start).as_secs_f64() * 1000.0);
    }
    for task in tasks {
        task.abort();
    }
    times
}

// ---------------------------------------------------------------------------------------------
// Ephemeral nodes
// ---------------------------------------------------------------------------------------------

/// The child process: holds an ephemeral node on `server` until it is killed (or its stdin
/// closes), printing `ready <granted timeout ms>` once the node exists.
fn hold_ephemeral(system: System, server: SocketAddr, path: &str) {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let announce = |granted: Duration| {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "ready {}", granted.as_millis())
                .and_then(|()| stdout.flush())
                .expect("stdout");
        };
        match system {
            System::Rmif => {
                let client = RegistryClient::connect(&[server]);
                let session = client
                    .open_session(SESSION_TIMEOUT)
                    .await
                    .expect("open session");
                let ephemeral = CreateMode {
                    ephemeral: true,
                    sequential: false,
                };
                session
                    .create(path, VALUE, ephemeral)
                    .await
                    .expect("create ephemeral");
                announce(session.timeout());
                std::future::pending::<()>().await;
            }
            System::Etcd => {
                let mut client = etcd_connect(&[server], Duration::from_secs(10))
                    .await
                    .expect("connect");
                let lease = client
                    .lease_grant(SESSION_TIMEOUT.as_secs() as i64, None)
                    .await
                    .expect("lease");
                let put = etcd_client::PutOptions::new().with_lease(lease.id());
                client.put(path, VALUE, Some(put)).await.expect("put");
                let (mut keeper, mut acks) = client
                    .lease_keep_alive(lease.id())
                    .await
                    .expect("keep alive");
                announce(Duration::from_secs(lease.ttl() as u64));
                // As etcd's own clients do: a keep-alive every third of the TTL.
                loop {
                    keeper.keep_alive().await.expect("keep alive");
                    acks.message().await.expect("keep-alive ack");
                    tokio::time::sleep(SESSION_TIMEOUT / 3).await;
                }
            }
            System::Zk => {
                let client = zk_connect(&[server], SESSION_TIMEOUT)
                    .await
                    .expect("connect");
                let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
                client
                    .create(path, VALUE, &ephemeral)
                    .await
                    .expect("create ephemeral");
                announce(client.session_timeout());
                std::future::pending::<()>().await;
            }
        }
    });
}

/// The holder process of the ephemeral scenario.
struct Holder {
    process: Process,
    granted_ms: u64,
}

impl Holder {
    fn start(system: System, server: SocketAddr, path: &str) -> Holder {
        let mut command = Command::new(std::env::current_exe().expect("current_exe"));
        command
            .args(["--hold-ephemeral", system.name(), "--path", path])
            .arg("--server")
            .arg(server.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_grouped(command).expect("start the holder process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the holder's answer");
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

// ---------------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------------

/// A writer's client of every member, with a 250 ms deadline per request where the client has
/// one (rmif, etcd), so that a write lost with the leader is given up and sent again soon. Without
/// it an etcd write caught by the leader's death waits for etcd's own request timeout (7 s with
/// default settings), and the gap would measure that timeout rather than the election; with 1 s
/// deadlines, every etcd gap came out at exactly two deadlines. ZooKeeper's client has no
/// per-request deadline; its requests fail as soon as the member they went to drops its clients
/// (as a follower does when it loses its leader).
async fn failover_client(system: System, members: &[SocketAddr]) -> Result<Conn, String> {
    let deadline = Duration::from_millis(250);
    match system {
        System::Rmif => {
            let options = ClientOptions {
                timeout: deadline,
                attempt_timeout: deadline,
                connect_timeout: Duration::from_millis(500),
            };
            let client = RegistryClient::new(members, options);
            client.prefer(members[0]);
            Ok(Conn::Rmif(client))
        }
        System::Etcd => Ok(Conn::Etcd(Box::new(etcd_connect(members, deadline).await?))),
        System::Zk => Conn::connect(system, members).await,
    }
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

// ---------------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------------

/// Every figure measured, by system and metric name, one value per run (or per kill, change or
/// removal, for the scenarios that repeat within a run).
type Results = BTreeMap<(System, String), Vec<f64>>;

fn record(results: &mut Results, system: System, key: impl Into<String>, value: f64) {
    results.entry((system, key.into())).or_default().push(value);
}

fn bench(options: Options) {
    let servers = Servers {
        rmif_set: options.rmif_set.clone(),
        ..Servers::from_env()
    };
    let systems: Vec<System> = options
        .systems
        .iter()
        .copied()
        .filter(|s| match servers.available(*s) {
            Ok(()) => true,
            Err(why) if options.smoke => {
                eprintln!("registry bench: skipping {}: {why}", s.name());
                false
            }
            Err(why) => {
                eprintln!("registry bench: {}: {why}", s.name());
                std::process::exit(2);
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    print_machine(&options, &servers);
    let mut results = Results::new();
    let mut errors = 0;
    for run in 0..options.runs {
        // Rotate the systems' order each run so that none always goes first or last.
        let mut order = systems.clone();
        if !order.is_empty() {
            let shift = run % order.len();
            order.rotate_left(shift);
        }
        for system in order {
            eprintln!("run {}/{}: {}", run + 1, options.runs, system.name());
            let run = AssertUnwindSafe(run_system(system, &servers, &options, &mut results));
            match runtime.block_on(run.catch_unwind()) {
                Ok(failed_ops) => errors += failed_ops,
                // Setting up the cluster failed (see the panic above); the other runs go on.
                Err(_) => {
                    record(&mut results, system, "setup/failed", 1.0);
                    errors += 1;
                }
            }
        }
    }
    print_tables(&options, &results);
    if errors > 0 {
        eprintln!("registry bench: {errors} operations failed");
        std::process::exit(1);
    }
}

/// Starts a fresh cluster of `system`, runs every scenario on it, stops it. Returns the number
/// of failed operations.
async fn run_system(
    system: System,
    servers: &Servers,
    options: &Options,
    results: &mut Results,
) -> u64 {
    let mut cluster = Cluster::start(system, servers);
    cluster.wait_ready().await;
    let mut setup = Conn::connect(system, &cluster.clients)
        .await
        .expect("setup client");
    for path in [
        "/bench",
        "/bench/w",
        "/bench/r",
        "/bench/f",
        "/bench/watch",
        "/bench/fan",
        "/bench/eph",
    ] {
        setup.ensure(path).await.expect("setup node");
    }
    prime(&cluster, options).await;
    let mut errors = 0;
    for &scenario in &options.scenarios {
        // A failed scenario (a hang, an error, a wrong answer) is reported and the others still
        // run: one system's bug should not cost the whole comparison.
        let outcome = AssertUnwindSafe(run_scenario(&mut cluster, scenario, options, results))
            .catch_unwind()
            .await;
        match outcome {
            Ok(failed_ops) => errors += failed_ops,
            Err(_) => {
                eprintln!(
                    "  {} FAILED on {} (see above)",
                    scenario.name(),
                    system.name()
                );
                record(results, system, format!("{}/failed", scenario.name()), 1.0);
                cluster.keep_files = true;
                errors += 1;
            }
        }
    }
    errors
}

/// Runs one scenario; returns the number of failed operations.
async fn run_scenario(
    cluster: &mut Cluster,
    scenario: Scenario,
    options: &Options,
    results: &mut Results,
) -> u64 {
    let system = cluster.system;
    // Leadership may have moved under load: the watch scenarios want the current followers.
    let leader = cluster.wait_ready().await;
    let mut errors = 0;
    match scenario {
        Scenario::Writes | Scenario::Reads => {
            let loads: &[Load] = if scenario == Scenario::Writes {
                &[Load::Create]
            } else {
                &[
                    Load::Read { linearizable: true },
                    Load::Read {
                        linearizable: false,
                    },
                ]
            };
            for &load in loads {
                for clients in CLIENTS {
                    let sample = throughput(cluster, load, clients, options).await;
                    eprintln!(
                        "  {:<14} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                        load.key(clients),
                        sample.ops_per_sec,
                        sample.p50_ms,
                        sample.p99_ms
                    );
                    let key = load.key(clients);
                    record(results, system, format!("{key}/rate"), sample.ops_per_sec);
                    record(results, system, format!("{key}/p50"), sample.p50_ms);
                    record(results, system, format!("{key}/p99"), sample.p99_ms);
                    errors += sample.errors;
                }
            }
        }
        Scenario::Watch => {
            let latencies = watch_latency(cluster, leader, options.samples).await;
            let p50 = latencies.value_at_quantile(0.50) as f64 / 1000.0;
            let p99 = latencies.value_at_quantile(0.99) as f64 / 1000.0;
            eprintln!("  watch          p50 {p50:>7.2} ms  p99 {p99:>7.2} ms");
            record(results, system, "watch/p50", p50);
            record(results, system, "watch/p99", p99);
        }
        Scenario::Fanout => {
            for watchers in FANOUT {
                let times = fanout(cluster, leader, watchers, options.fanout_changes).await;
                eprintln!("  fanout/{watchers:<7} {times:.1?} ms");
                for time in times {
                    record(results, system, format!("fanout/{watchers}"), time);
                }
            }
        }
        Scenario::Ephemeral => {
            let times = ephemeral_removal(cluster, leader, options.ephemerals).await;
            eprintln!("  ephemeral      {times:.0?} ms");
            for time in times {
                record(results, system, "ephemeral", time);
            }
        }
        Scenario::Failover => {
            for gap in failover(cluster, options.kills).await {
                record(results, system, "failover", gap);
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

fn median(values: &[f64]) -> Option<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[n / 2]),
        n => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn print_machine(options: &Options, servers: &Servers) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cpu}, {cores} cores");
    println!("peers: {}", servers.versions());
    if !servers.rmif_set.is_empty() {
        println!("rmif members run with: {}", servers.rmif_set.join(" "));
    }
    println!(
        "{} run(s); throughput cells {:.1} s warm-up + {:.1} s measured; medians across runs{}",
        options.runs,
        options.warmup.as_secs_f64(),
        options.duration.as_secs_f64(),
        if options.smoke {
            " (smoke test, not a benchmark: pass --bench)"
        } else {
            ""
        }
    );
    println!();
}

/// A table cell: the median of `key` for `system`, formatted.
fn cell(results: &Results, system: System, key: &str, digits: usize) -> String {
    results
        .get(&(system, key.to_owned()))
        .and_then(|v| median(v))
        .map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

/// rmif's median over `system`'s.
fn ratio(results: &Results, system: System, key: &str) -> String {
    let get = |s: System| results.get(&(s, key.to_owned())).and_then(|v| median(v));
    match (get(System::Rmif), get(system)) {
        (Some(rmif), Some(peer)) if peer > 0.0 => format!("{:.2}x", rmif / peer),
        _ => "–".to_owned(),
    }
}

fn print_tables(options: &Options, results: &Results) {
    let mut out = String::new();
    let scenarios = &options.scenarios;
    if scenarios.contains(&Scenario::Writes) || scenarios.contains(&Scenario::Reads) {
        let _ = writeln!(
            out,
            "| workload | clients | rmif ops/s | etcd ops/s | ZooKeeper ops/s | rmif/etcd | rmif/ZK \
             | rmif p50 / p99 ms | etcd p50 / p99 ms | ZooKeeper p50 / p99 ms |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        let rows = [
            (Scenario::Writes, "write", "create (write)"),
            (Scenario::Reads, "linread", "linearizable read"),
            (Scenario::Reads, "staleread", "local read"),
        ];
        for (scenario, name, label) in rows {
            if !scenarios.contains(&scenario) {
                continue;
            }
            for clients in CLIENTS {
                let key = format!("{name}/{clients}");
                let rate = |s| cell(results, s, &format!("{key}/rate"), 0);
                let lat = |s| {
                    format!(
                        "{} / {}",
                        cell(results, s, &format!("{key}/p50"), 2),
                        cell(results, s, &format!("{key}/p99"), 2)
                    )
                };
                let _ = writeln!(
                    out,
                    "| {label} | {clients} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    rate(System::Rmif),
                    rate(System::Etcd),
                    rate(System::Zk),
                    ratio(results, System::Etcd, &format!("{key}/rate")),
                    ratio(results, System::Zk, &format!("{key}/rate")),
                    lat(System::Rmif),
                    lat(System::Etcd),
                    lat(System::Zk),
                );
            }
        }
        let _ = writeln!(out);
    }
    // Times: lower is better, and the ratio is rmif's time over the peer's.
    let mut times: Vec<(String, String)> = Vec::new();
    if scenarios.contains(&Scenario::Failover) {
        times.push(("failover: longest write gap".into(), "failover".into()));
    }
    if scenarios.contains(&Scenario::Watch) {
        times.push(("watch notification p50".into(), "watch/p50".into()));
        times.push(("watch notification p99".into(), "watch/p99".into()));
    }
    if scenarios.contains(&Scenario::Fanout) {
        for watchers in FANOUT {
            times.push((
                format!("fan-out to {watchers} watchers"),
                format!("fanout/{watchers}"),
            ));
        }
    }
    if scenarios.contains(&Scenario::Ephemeral) {
        times.push((
            "ephemeral removal after kill (2 s session)".into(),
            "ephemeral".into(),
        ));
    }
    if !times.is_empty() {
        let _ = writeln!(
            out,
            "| time (ms, lower is better) | rmif | etcd | ZooKeeper | rmif/etcd | rmif/ZK | samples |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
        for (label, key) in times {
            let samples = System::ALL
                .iter()
                .filter_map(|s| results.get(&(*s, key.clone())))
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {samples} per system |",
                cell(results, System::Rmif, &key, 1),
                cell(results, System::Etcd, &key, 1),
                cell(results, System::Zk, &key, 1),
                ratio(results, System::Etcd, &key),
                ratio(results, System::Zk, &key),
            );
        }
    }
    let failed: Vec<String> = results
        .keys()
        .filter_map(|(system, key)| {
            let scenario = key.strip_suffix("/failed")?;
            Some(format!("{scenario} on {}", system.name()))
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailed (no figures): {}", failed.join(", "));
    }
    print!("{out}");
}
