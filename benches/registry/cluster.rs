//! A 3-member cluster of one system: its members' processes, data and logs in a temporary
//! directory, killing, stopping and restarting members, waiting until it has a leader, and the
//! memory and CPU time its members use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{Launch, Process, cpu_ms, free_ports, loopback, resident_kib};
use crate::servers::Servers;
use crate::system::{MemberPorts, Role, Tuning};
use crate::{System, etcd, rmif, zookeeper};

/// Two members that are not the leader.
pub fn followers(leader: usize) -> (usize, usize) {
    ((leader + 1) % 3, (leader + 2) % 3)
}

/// A 3-member cluster of one system in a temporary directory.
pub struct Cluster {
    pub system: System,
    /// Each member's client address.
    pub clients: Vec<SocketAddr>,
    launches: Vec<Launch>,
    running: Vec<Option<Process>>,
    dir: Option<tempfile::TempDir>,
    /// Keep the logs and data when the cluster goes (a scenario failed on it).
    pub keep_files: bool,
}

impl Cluster {
    pub fn start(system: System, servers: &Servers) -> Cluster {
        Cluster::start_tuned(system, servers, Tuning::default())
    }

    /// A cluster whose members run with `tuning`.
    pub fn start_tuned(system: System, servers: &Servers, tuning: Tuning) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("registry-bench-{}-", system.name()))
            .tempdir()
            .expect("temporary directory");
        // Per member: a client port, a peer port and (ZooKeeper) an election port.
        let ports = free_ports(9);
        let ports = MemberPorts {
            clients: ports[0..3].iter().map(|p| loopback(*p)).collect(),
            peers: ports[3..6].to_vec(),
            elections: ports[6..9].to_vec(),
        };
        let launches = match system {
            System::Rmif => rmif::launches(servers, dir.path(), &ports, tuning),
            System::Etcd => etcd::launches(servers, dir.path(), &ports, tuning),
            System::Zk => zookeeper::launches(servers, dir.path(), &ports),
        };
        let mut cluster = Cluster {
            system,
            clients: ports.clients,
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

    /// Starts `member` (again), on its data of before if it had any.
    pub fn spawn(&mut self, member: usize) {
        let log = self.log_path(member);
        self.running[member] = Some(Process::start(&self.launches[member], &log));
    }

    /// The temporary directory holding every member's data and log.
    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("cluster directory").path()
    }

    /// Where `member` logs (appended to across restarts).
    pub fn log_path(&self, member: usize) -> PathBuf {
        self.dir().join(format!("member-{member}.log"))
    }

    /// `member`'s data directory (what the launches name).
    pub fn data_dir(&self, member: usize) -> PathBuf {
        let prefix = match self.system {
            System::Rmif => "rmif",
            System::Etcd => "etcd",
            System::Zk => "zk",
        };
        self.dir().join(format!("{prefix}-{}", member + 1))
    }

    /// `member`'s process id, if it runs.
    pub fn pid(&self, member: usize) -> Option<u32> {
        self.running[member].as_ref().map(|p| p.child.id())
    }

    /// SIGTERMs `member` and waits for it to exit; returns how long that took. Panics if it has
    /// not exited after 30 s (it is SIGKILLed then).
    pub fn terminate(&mut self, member: usize) -> Duration {
        let Some(mut process) = self.running[member].take() else {
            return Duration::ZERO;
        };
        let asked = Instant::now();
        match process.terminate(Duration::from_secs(30)) {
            Ok(status) => {
                // etcd re-raises the SIGTERM once it has stopped: that is a clean stop too.
                let by_sigterm =
                    std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGTERM);
                if !status.success() && !by_sigterm {
                    eprintln!(
                        "    {} member {} exited with {status} on SIGTERM",
                        self.system.name(),
                        member + 1
                    );
                }
                asked.elapsed()
            }
            Err(()) => {
                self.keep_files = true;
                panic!(
                    "{} member {} still runs 30 s after SIGTERM (logs in {})",
                    self.system.name(),
                    member + 1,
                    self.dir().display()
                );
            }
        }
    }

    /// `member`'s resident memory in KiB, if it runs.
    pub fn member_resident_kib(&self, member: usize) -> Option<u64> {
        self.pid(member).and_then(resident_kib)
    }

    /// The CPU time `member` has used so far, in ms, if it runs.
    pub fn member_cpu_ms(&self, member: usize) -> Option<f64> {
        self.pid(member).and_then(cpu_ms)
    }

    /// SIGKILLs `member`.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut process) = self.running[member].take() {
            process.kill();
        }
    }

    /// Panics (naming the log) if a member this bench did not kill has exited.
    pub fn check_alive(&mut self) {
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

    /// The resident memory of every running member together, in KiB.
    pub fn resident_kib(&self) -> u64 {
        self.running
            .iter()
            .flatten()
            .filter_map(|process| resident_kib(process.child.id()))
            .sum()
    }

    /// The CPU time every running member has used so far together, in ms.
    pub fn cpu_ms(&self) -> f64 {
        self.running
            .iter()
            .flatten()
            .filter_map(|process| cpu_ms(process.child.id()))
            .sum()
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..3).filter(|m| self.running[*m].is_some())
    }

    /// Waits until every running member answers and exactly one of them leads; returns it.
    pub async fn wait_ready(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.check_alive();
            let mut states = Vec::new();
            for member in self.running() {
                states.push((member, role(self.system, self.clients[member]).await));
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
        if (std::thread::panicking() || self.keep_files)
            && let Some(dir) = self.dir.take()
        {
            eprintln!("cluster logs and data kept in {}", dir.keep().display());
        }
        if let Some(dir) = self.dir.take() {
            FINISHED.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
        }
    }
}

/// The directories of clusters that are done, deleted when the bench ends
/// ([`remove_finished`]), not between runs. Freeing a cluster's hundreds of megabytes (on a
/// file system that discards blocks as they are freed) holds up fsyncs for a while after the
/// files are gone, and reusing those blocks soon after stalled the next cluster's log writes
/// 25-35 ms at once on every member: write gaps in a run that were the previous run's.
static FINISHED: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

/// Deletes the directories of the clusters that are done.
pub fn remove_finished() {
    FINISHED.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// What the member at `addr` says it is, if it answers within 2 s and knows a leader.
async fn role(system: System, addr: SocketAddr) -> Option<Role> {
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        match system {
            System::Rmif => rmif::role(addr).await,
            System::Etcd => etcd::role(addr).await,
            System::Zk => zookeeper::role(addr).await,
        }
    })
    .await;
    answer.ok().flatten()
}
