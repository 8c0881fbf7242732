//! Registry members as real processes (the `rmif-registry` binary) on loopback, so that tests
//! can SIGKILL, SIGSTOP and restart them.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rmif_registry::api::MemberStatus;

use crate::process::{free_port, program, send_signal};
use crate::proxy::Network;
use rmif_registry::{ClientOptions, RegistryClient, RegistryError};
use tokio::time::Instant;

/// Raft timing and snapshot settings for a test cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tick_ms: u64,
    pub election_ticks: u64,
    pub snapshot_entries: u64,
    /// Route every member-to-member and client-to-member connection through a fault proxy.
    pub proxied: bool,
    /// More lines for every member's configuration file (`key=value`, one a line).
    pub extra: String,
}

impl Default for Settings {
    fn default() -> Self {
        // Generous timing: several clusters may share two cores during a test run.
        Settings {
            tick_ms: 50,
            election_ticks: 10,
            snapshot_entries: 10_000,
            proxied: false,
            extra: String::new(),
        }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: u64,
    pub client_addr: SocketAddr,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A cluster of member processes in a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    /// The fault proxies, when the cluster was started with `proxied`.
    pub network: Option<std::sync::Arc<Network>>,
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `size` members and waits until one of them leads.
    pub async fn start(size: u64, settings: Settings) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let peers: BTreeMap<u64, SocketAddr> = (1..=size)
            .map(|id| (id, format!("127.0.0.1:{}", free_port()).parse().unwrap()))
            .collect();
        let client_addrs: Vec<SocketAddr> = (1..=size)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let network = if settings.proxied {
            let targets: Vec<SocketAddr> = peers.values().copied().collect();
            Some(Network::start(&targets, &client_addrs).await)
        } else {
            None
        };
        // Each member dials the others through its own proxies, if any.
        let peer_list = |me: u64| {
            peers
                .iter()
                .map(|(id, addr)| {
                    let addr = match &network {
                        Some(network) if *id != me => network.peer[(me - 1) as usize]
                            [(*id - 1) as usize]
                            .as_ref()
                            .map(|link| link.addr)
                            .unwrap(),
                        _ => *addr,
                    };
                    format!("{id}={addr}")
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let members = (1..=size)
            .map(|id| {
                let client_addr = client_addrs[(id - 1) as usize];
                let peer_list = peer_list(id);
                let data_dir = dir.path().join(format!("member-{id}"));
                let config = dir.path().join(format!("member-{id}.properties"));
                fs::write(
                    &config,
                    format!(
                        "node_id={id}\npeers={peer_list}\nclient_addr={client_addr}\ndata_dir={}\n\
                         raft_tick_ms={}\nelection_ticks={}\nheartbeat_ticks=2\nsnapshot_entries={}\n{}",
                        data_dir.display(),
                        settings.tick_ms,
                        settings.election_ticks,
                        settings.snapshot_entries,
                        settings.extra
                    ),
                )
                .expect("write member configuration");
                Member {
                    id,
                    client_addr,
                    config,
                    data_dir,
                    log: dir.path().join(format!("member-{id}.log")),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            members,
            network,
            dir: Some(dir),
        };
        for id in 1..=size {
            cluster.spawn(id);
        }
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    fn member(&self, id: u64) -> &Member {
        &self.members[(id - 1) as usize]
    }

    fn member_mut(&mut self, id: u64) -> &mut Member {
        &mut self.members[(id - 1) as usize]
    }

    /// Starts (or restarts) member `id`'s process.
    pub fn spawn(&mut self, id: u64) {
        let member = self.member_mut(id);
        assert!(member.child.is_none(), "member {id} is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("member log");
        let child = Command::new(program("rmif-registry"))
            .arg(&member.config)
            .env("RMIF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn rmif-registry");
        member.child = Some(child);
    }

    /// SIGKILL: the process dies at once, without flushing anything.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.member_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The leader, once there is one, and a member that is not it.
    pub async fn leader_and_follower(&self, limit: Duration) -> (u64, u64) {
        let leader = self.wait_for_leader(limit).await;
        let follower = (1..=self.members.len() as u64)
            .find(|id| *id != leader)
            .expect("a cluster of more than one member");
        (leader, follower)
    }

    /// Waits for member `id`'s process to exit on its own (a member that refuses to start);
    /// panics if it still runs after `limit`.
    pub async fn wait_exit(&mut self, id: u64, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let child = self
                .member_mut(id)
                .child
                .as_mut()
                .expect("member was started");
            if let Some(status) = child.try_wait().expect("wait for the member") {
                self.member_mut(id).child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "member {id} still runs after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the process to exit on its own.
    pub fn terminate(&mut self, id: u64) {
        if let Some(mut child) = self.member_mut(id).child.take() {
            send_signal(child.id(), libc::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("member {id} did not exit within 10 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGTERM, then waits up to `limit` for the process to exit on its own; returns its exit
    /// status and how long it took. Panics (after a SIGKILL) if it still runs after `limit`.
    pub async fn terminate_within(
        &mut self,
        id: u64,
        limit: Duration,
    ) -> (std::process::ExitStatus, Duration) {
        let mut child = self
            .member_mut(id)
            .child
            .take()
            .unwrap_or_else(|| panic!("member {id} is not running"));
        let started = Instant::now();
        send_signal(child.id(), libc::SIGTERM);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the member") {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("member {id} did not exit within {limit:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGSTOP: the process is paused, not dead.
    pub fn pause(&self, id: u64) {
        if let Some(pid) = self.member(id).pid() {
            send_signal(pid, libc::SIGSTOP);
        }
    }

    /// SIGCONT.
    pub fn resume(&self, id: u64) {
        if let Some(pid) = self.member(id).pid() {
            send_signal(pid, libc::SIGCONT);
        }
    }

    /// Deletes member `id`'s data directory (it must be stopped) and marks it, as an operator
    /// would, as joining an existing cluster when it starts again.
    pub fn wipe(&self, id: u64) {
        let member = self.member(id);
        assert!(member.child.is_none(), "wipe a stopped member only");
        let _ = fs::remove_dir_all(&member.data_dir);
        let mut config = fs::read_to_string(&member.config).expect("member configuration");
        if !config.contains("initial_cluster_state") {
            config.push_str("initial_cluster_state=existing\n");
            fs::write(&member.config, config).expect("member configuration");
        }
    }

    /// Every member's client address as clients reach it (through the proxies, if any).
    pub fn servers(&self) -> Vec<SocketAddr> {
        match &self.network {
            Some(network) => network.client.iter().map(|link| link.addr).collect(),
            None => self.members.iter().map(|m| m.client_addr).collect(),
        }
    }

    /// Every member's client address as the `rmif --servers` flag wants them: `a:p,b:q,…`.
    pub fn servers_arg(&self) -> String {
        self.servers()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that may use every member.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.servers(), ClientOptions::default())
    }

    /// A client that talks to member `id` only.
    pub fn client_of(&self, id: u64) -> RegistryClient {
        let options = ClientOptions {
            timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        RegistryClient::new(&[self.member(id).client_addr], options)
    }

    /// Member `id`'s status, if it answers.
    pub async fn status(&self, id: u64) -> Result<MemberStatus, RegistryError> {
        let client = self.client_of(id);
        client.member_status(self.member(id).client_addr).await
    }

    /// The member that every running member agrees leads, waiting up to `limit`.
    pub async fn wait_for_leader(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let mut leaders = Vec::new();
            let mut running = 0;
            for member in self.members.iter().filter(|m| m.is_running()) {
                running += 1;
                if let Ok(status) = self.status(member.id).await
                    && status.leader != 0
                {
                    leaders.push((
                        status.leader,
                        status.role == "leader" && status.id == status.leader,
                    ));
                }
            }
            if leaders.len() == running
                && leaders.windows(2).all(|w| w[0].0 == w[1].0)
                && leaders.iter().any(|(_, is_leader)| *is_leader)
            {
                return leaders[0].0;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {limit:?}; statuses: {}",
                self.describe().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running member has applied the same index and holds the same state.
    pub async fn wait_converged(&self, limit: Duration) -> Vec<MemberStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let mut statuses = Vec::new();
            for member in self.members.iter().filter(|m| m.is_running()) {
                if let Ok(status) = self.status(member.id).await {
                    statuses.push(status);
                }
            }
            let running = self.members.iter().filter(|m| m.is_running()).count();
            if statuses.len() == running
                && statuses
                    .windows(2)
                    .all(|w| w[0].applied == w[1].applied && w[0].digest == w[1].digest)
            {
                return statuses;
            }
            assert!(
                Instant::now() < deadline,
                "members did not converge within {limit:?}: {}",
                self.describe().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One line per member, for failure messages.
    pub async fn describe(&self) -> String {
        let mut lines = Vec::new();
        for member in &self.members {
            let state = if !member.is_running() {
                "stopped".to_owned()
            } else {
                match self.status(member.id).await {
                    Ok(s) => format!(
                        "{} term {} leader {} commit {} applied {} digest {:x}",
                        s.role, s.term, s.leader, s.commit, s.applied, s.digest
                    ),
                    Err(error) => format!("no answer: {error}"),
                }
            };
            lines.push(format!(
                "member {} ({}): {state}",
                member.id,
                member.log.display()
            ));
        }
        lines.join("; ")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the members' logs and data for the post-mortem.
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster files kept in {}", dir.keep().display());
            }
        }
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                if let Some(pid) = Some(child.id()) {
                    send_signal(pid, libc::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
