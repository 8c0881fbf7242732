//! A registry cluster whose members run in the test process: cheaper than processes, for tests
//! that need several members (a failover, a quorum) but need not SIGKILL one; a member is
//! stopped by shutting it down, which closes its ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rmif_registry::{ClientOptions, RegistryClient};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use tokio::time::Instant;

use crate::process::free_port;

/// Members running in this process; `None` once stopped.
#[derive(Debug)]
pub struct LocalCluster {
    members: Vec<Option<RegistryServer>>,
    client_addrs: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts `size` members and waits until one leads.
    pub async fn start(size: u64) -> LocalCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let peers: BTreeMap<u64, SocketAddr> = (1..=size)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let mut members = Vec::new();
        let mut client_addrs = Vec::new();
        for id in 1..=size {
            let mut config = RegistryConfig::single(
                SocketAddr::from(([127, 0, 0, 1], free_port())),
                dir.path().join(format!("member-{id}")),
            );
            config.node_id = id;
            config.peers = peers.clone();
            config.tick = Duration::from_millis(50);
            let member = RegistryServer::start(config).await.expect("start a member");
            client_addrs.push(member.client_addr());
            members.push(Some(member));
        }
        let cluster = LocalCluster {
            members,
            client_addrs,
            _dir: dir,
        };
        cluster.leader_and_follower(Duration::from_secs(20)).await;
        cluster
    }

    /// Every member's client address, as `--servers` takes them.
    pub fn servers_arg(&self) -> String {
        self.client_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client of every member.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::connect(&self.client_addrs)
    }

    /// The leader and a member that is not it, once the running members agree on a leader.
    pub async fn leader_and_follower(&self, limit: Duration) -> (u64, u64) {
        let deadline = Instant::now() + limit;
        loop {
            let mut leaders = Vec::new();
            for (index, addr) in self.client_addrs.iter().enumerate() {
                if self.members[index].is_none() {
                    continue;
                }
                let client = RegistryClient::new(
                    &[*addr],
                    ClientOptions {
                        timeout: Duration::from_secs(1),
                        attempt_timeout: Duration::from_secs(1),
                        connect_timeout: Duration::from_millis(500),
                        ..ClientOptions::default()
                    },
                );
                if let Ok(status) = client.member_status(*addr).await {
                    leaders.push(status.leader);
                }
            }
            let running = self.members.iter().filter(|m| m.is_some()).count();
            if leaders.len() == running
                && leaders[0] != 0
                && leaders.iter().all(|l| *l == leaders[0])
            {
                let leader = leaders[0];
                let follower = (1..=self.members.len() as u64)
                    .find(|id| *id != leader && self.members[(*id - 1) as usize].is_some())
                    .expect("a running member besides the leader");
                return (leader, follower);
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops member `id` (its ports close; clients see it unreachable).
    pub async fn stop(&mut self, id: u64) {
        if let Some(member) = self.members[(id - 1) as usize].take() {
            member.shutdown().await;
        }
    }
}
