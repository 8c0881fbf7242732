//! rmif-registry: its members' configuration, how to tell its leader, and every operation the
//! scenarios make, through the public client (`rmif_registry::RegistryClient`) and, for
//! discovery, the consumer path users run (`rmif_registry::discovery::RegistryDiscovery`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rmif_core::{Discovery, ProviderSet, ServiceKey};
use rmif_registry::api::WatchMode;
use rmif_registry::discovery::{
    ConsumerMetadata, RegistryDiscovery, consumers_path, providers_path,
};
use rmif_registry::{
    ChangeKind, ClientOptions, Consistency, CreateMode, RegistryClient, RegistryError, Session,
    Watcher,
};
use tokio::sync::watch;

use crate::process::{Launch, loopback};
use crate::servers::Servers;
use crate::system::{Change, Tuning};
use crate::system::{DISCOVERY_SESSION, MemberPorts, Role, provider_metadata};

/// Each member's properties file and command line: the release `rmif-registry` with its default
/// Raft timing (25 ms ticks, election after 10, heartbeat every 2), `tuning`, then `--rmif-set`.
/// Provider probes are off: the providers announced here are stand-in addresses no provider
/// serves, and etcd and ZooKeeper, which these scenarios compare with, probe nothing. Members
/// log their own INFO lines (snapshots, start-up replay, leadership changes), which some
/// scenarios read; raft-rs's at WARN.
pub fn launches(servers: &Servers, dir: &Path, ports: &MemberPorts, tuning: Tuning) -> Vec<Launch> {
    let peer_list = (0..3)
        .map(|i| format!("{}={}", i + 1, loopback(ports.peers[i])))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let config = dir.join(format!("rmif-{}.properties", i + 1));
            std::fs::write(
                &config,
                format!(
                    "node_id={}\npeers={peer_list}\nclient_addr={}\ndata_dir={}\nprobe_providers=false\n",
                    i + 1,
                    ports.clients[i],
                    dir.join(format!("rmif-{}", i + 1)).display()
                ),
            )
            .expect("write rmif member configuration");
            let tuned = tuning
                .snapshot_entries
                .map(|n| format!("snapshot_entries={n}"));
            Launch {
                program: servers.rmif.clone().expect("rmif-registry binary"),
                args: std::iter::once(config.into())
                    .chain(
                        tuned
                            .iter()
                            .chain(&servers.rmif_set)
                            .flat_map(|kv| [OsString::from("--set"), OsString::from(kv)]),
                    )
                    .collect(),
                env: vec![(
                    "RMIF_LOG".to_owned(),
                    "warn,rmif_registry_server=info".to_owned(),
                )],
            }
        })
        .collect()
}

/// What the member at `addr` says it is, if it knows a leader.
pub async fn role(addr: SocketAddr) -> Option<Role> {
    let status = RegistryClient::new(&[addr], request_deadline(Duration::from_secs(1)))
        .member_status(addr)
        .await
        .ok()?;
    match (status.role.as_str(), status.leader) {
        ("leader", _) => Some(Role::Leader),
        (_, 0) => None,
        _ => Some(Role::Follower),
    }
}

/// Client options under which a request, and each attempt at it, gives up after `deadline`.
pub fn request_deadline(deadline: Duration) -> ClientOptions {
    ClientOptions {
        timeout: deadline,
        attempt_timeout: deadline,
        connect_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

/// A client of `members` that starts with the first.
pub fn client(members: &[SocketAddr], options: ClientOptions) -> RegistryClient {
    let client = RegistryClient::new(members, options);
    client.prefer(members[0]);
    client
}

pub async fn create(client: &RegistryClient, path: &str, value: &[u8]) -> Result<(), String> {
    client
        .create(path, value, CreateMode::PERSISTENT)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

pub async fn set(client: &RegistryClient, path: &str, value: &[u8]) -> Result<(), String> {
    client
        .set(path, value, None)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A linearizable read (ReadIndex, the default) or one from the member's own state (`Stale`).
pub async fn read(
    client: &RegistryClient,
    path: &str,
    linearizable: bool,
) -> Result<Vec<u8>, String> {
    let consistency = if linearizable {
        Consistency::Linearizable
    } else {
        Consistency::Stale
    };
    client
        .get(path, consistency)
        .await
        .map(|d| d.data)
        .map_err(|e| e.to_string())
}

/// A persistent watch of `path`, once the member has confirmed that it is armed.
pub async fn watch(client: &RegistryClient, path: &str) -> Result<Watcher, String> {
    let mut watcher = client
        .watch(path, WatchMode::Persistent)
        .await
        .map_err(|e| e.to_string())?;
    match watcher.next().await {
        Some(Ok(message)) if message.is_armed() => Ok(watcher),
        other => Err(format!("rmif watch: expected armed, got {other:?}")),
    }
}

/// The next change the watch reports, skipping messages without events.
pub async fn next_change(watcher: &mut Watcher) -> Result<Change, String> {
    loop {
        match watcher.next().await {
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
        }
    }
}

/// Creates `path` as an ephemeral node of a session of `timeout` on `server`, calls `ready`
/// with the timeout the member granted, and keeps the session alive from then on.
pub async fn hold_ephemeral(
    server: SocketAddr,
    path: &str,
    timeout: Duration,
    ready: impl FnOnce(Duration),
) {
    let client = RegistryClient::connect(&[server]);
    let session = client.open_session(timeout).await.expect("open session");
    let ephemeral = CreateMode {
        ephemeral: true,
        sequential: false,
    };
    session
        .create(path, crate::VALUE, ephemeral)
        .await
        .expect("create ephemeral");
    ready(session.timeout());
    std::future::pending::<()>().await;
}

/// `count` sessions of `timeout` over `clients` clients (client i on member i mod 3), opened 64
/// at a time. Each heartbeats in the background, a third of its timeout apart, until dropped.
pub async fn open_sessions(
    members: &[SocketAddr],
    clients: usize,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Session>, String> {
    use futures_util::{StreamExt, TryStreamExt};
    let clients: Vec<RegistryClient> = (0..clients)
        .map(|i| RegistryClient::new(&[members[i % members.len()]], ClientOptions::default()))
        .collect();
    futures_util::stream::iter(0..count)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            async move {
                client
                    .open_session(timeout)
                    .await
                    .map_err(|e| format!("open session {i}: {e}"))
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await
}

/// Creates `path` holding `value` as an ephemeral node of `session`.
pub async fn create_ephemeral(session: &Session, path: &str, value: &[u8]) -> Result<(), String> {
    let ephemeral = CreateMode {
        ephemeral: true,
        sequential: false,
    };
    session
        .create(path, value, ephemeral)
        .await
        .map(drop)
        .map_err(|e| format!("{path}: {e}"))
}

/// The index the member at `addr` has applied, if it answers.
pub async fn applied(addr: SocketAddr) -> Option<u64> {
    RegistryClient::new(&[addr], request_deadline(Duration::from_secs(1)))
        .member_status(addr)
        .await
        .ok()
        .map(|status| status.applied)
}

/// A session holding provider nodes of one service, created under
/// `rmif_registry::discovery::providers_path` with `ProviderMetadata::to_json()` data: what
/// `Registration::announce` creates for each provider, without a session per provider.
pub struct ProviderHost {
    session: Session,
    providers: String,
    consumers: String,
}

impl ProviderHost {
    pub async fn open(member: SocketAddr, service: &str) -> Result<ProviderHost, String> {
        let key = ServiceKey::new(service);
        let client = RegistryClient::new(&[member], ClientOptions::default());
        let providers = providers_path(&key);
        // The parents, as `Registration` creates them for the first provider of a service.
        let mut parent = String::new();
        for name in providers.split('/').filter(|n| !n.is_empty()) {
            parent = format!("{parent}/{name}");
            match client.create(&parent, b"", CreateMode::PERSISTENT).await {
                Ok(_) | Err(RegistryError::NodeExists { .. }) => {}
                Err(e) => return Err(format!("rmif: create {parent}: {e}")),
            }
        }
        let session = client
            .open_session(DISCOVERY_SESSION)
            .await
            .map_err(|e| format!("rmif: open session: {e}"))?;
        Ok(ProviderHost {
            session,
            providers,
            consumers: consumers_path(&key),
        })
    }

    pub async fn announce(&self, addr: SocketAddr) -> Result<(), String> {
        let ephemeral = CreateMode {
            ephemeral: true,
            sequential: false,
        };
        self.session
            .create(
                &format!("{}/{addr}", self.providers),
                &provider_metadata(addr).to_json(),
                ephemeral,
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub async fn withdraw(&self, addr: SocketAddr) -> Result<(), String> {
        self.session
            .delete(&format!("{}/{addr}", self.providers), None)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Consumers registered under the service (by `RegistryDiscovery::registering`).
    pub async fn registered_consumers(&self) -> Result<usize, String> {
        match self
            .session
            .client()
            .children(&self.consumers, Consistency::Stale)
            .await
        {
            Ok(list) => Ok(list.children.len()),
            Err(RegistryError::NoNode { .. }) => Ok(0),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

/// A consumer as `rmif_registry::discovery::consumer_discovery` builds one (without its cache
/// file): a `RegistryDiscovery` over a `RegistryClient` of its own, registering the consumer
/// under each service it follows (a session and an ephemeral node), its list read from the
/// `ProviderSet` receiver that `Discovery::subscribe` returns.
pub struct Consumer {
    discovery: RegistryDiscovery,
    providers: watch::Receiver<ProviderSet>,
}

impl Consumer {
    /// Returns once the list is resolved.
    pub async fn start(member: SocketAddr, service: &str, id: usize) -> Result<Consumer, String> {
        let client = RegistryClient::new(&[member], ClientOptions::default());
        let metadata = ConsumerMetadata {
            address: member.ip().to_string(),
            pid: std::process::id(),
            application: "bench-consumer".to_owned(),
            policy: "random".to_owned(),
            serialization: "msgpack".to_owned(),
            rmif_version: "0.1.0".to_owned(),
            start_time_ms: 1_764_000_000_000,
            extra: [("consumer".to_owned(), id.into())].into(),
        };
        let discovery = RegistryDiscovery::new(client).registering(metadata, DISCOVERY_SESSION);
        let mut providers = discovery.subscribe(&ServiceKey::new(service));
        providers
            .wait_for(|set| set.resolved)
            .await
            .map_err(|_| "rmif: discovery stopped".to_owned())?;
        Ok(Consumer {
            discovery,
            providers,
        })
    }

    pub fn holds(&self, addr: SocketAddr) -> bool {
        self.providers
            .borrow()
            .providers
            .iter()
            .any(|p| p.addr == addr)
    }

    pub fn len(&self) -> usize {
        self.providers.borrow().providers.len()
    }

    pub async fn changed(&mut self) -> Result<(), String> {
        self.providers
            .changed()
            .await
            .map_err(|_| "rmif: discovery stopped".to_owned())
    }

    /// Withdraws the registration (closes the session); the watch stops with the discovery.
    pub async fn close(self) {
        self.discovery.withdraw().await;
    }
}
