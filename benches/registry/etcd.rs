//! etcd: its members' command lines, how to tell its leader, and every operation the scenarios
//! make, through `etcd-client` (gRPC): for discovery, providers as keys on a lease and
//! consumers following a prefix (a range read, then a watch from the revision after it).

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions, WatchStream};
use rmif_core::ServiceKey;
use rmif_registry::discovery::{ProviderMetadata, providers_path};

use crate::process::{Launch, loopback};
use crate::servers::Servers;
use crate::system::{Change, Tuning};
use crate::system::{DISCOVERY_SESSION, MemberPorts, Role, provider_metadata};

/// Each member's command line: default timing (100 ms heartbeat, 1 s election timeout), fsync,
/// and `tuning`. Members log at INFO: snapshots and leader elections, which some scenarios read.
pub fn launches(servers: &Servers, dir: &Path, ports: &MemberPorts, tuning: Tuning) -> Vec<Launch> {
    let cluster = (0..3)
        .map(|i| format!("m{}=http://{}", i + 1, loopback(ports.peers[i])))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let client_url = format!("http://{}", ports.clients[i]);
            let peer_url = format!("http://{}", loopback(ports.peers[i]));
            let data = dir.join(format!("etcd-{}", i + 1));
            let mut args: Vec<String> = vec![
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
                "--log-level=info".to_owned(),
            ];
            if let Some(entries) = tuning.snapshot_entries {
                args.push(format!("--snapshot-count={entries}"));
            }
            Launch {
                program: servers.etcd.clone().expect("etcd binary"),
                args: args.into_iter().map(OsString::from).collect(),
                env: Vec::new(),
            }
        })
        .collect()
}

/// What the member at `addr` says it is, if it knows a leader.
pub async fn role(addr: SocketAddr) -> Option<Role> {
    let mut client = connect(&[addr], Duration::from_secs(1)).await.ok()?;
    let status = client.status().await.ok()?;
    let me = status.header()?.member_id();
    match status.leader() {
        0 => None,
        leader if leader == me => Some(Role::Leader),
        _ => Some(Role::Follower),
    }
}

/// A client of `members` whose every request gives up after `timeout`.
pub async fn connect(members: &[SocketAddr], timeout: Duration) -> Result<Client, String> {
    let urls: Vec<String> = members.iter().map(|a| format!("http://{a}")).collect();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(timeout);
    Client::connect(urls, Some(options))
        .await
        .map_err(|e| format!("etcd connect: {e}"))
}

/// A put: etcd has no create-only write short of a transaction, and the keys are new anyway.
pub async fn put(client: &mut Client, path: &str, value: &[u8]) -> Result<(), String> {
    client
        .put(path, value, None)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The default (linearizable) range read, or a serializable one from the member's own state.
pub async fn read(client: &mut Client, path: &str, linearizable: bool) -> Result<Vec<u8>, String> {
    let options = (!linearizable).then(|| GetOptions::new().with_serializable());
    let response = client.get(path, options).await.map_err(|e| e.to_string())?;
    response
        .kvs()
        .first()
        .map(|kv| kv.value().to_vec())
        .ok_or_else(|| format!("{path}: no such key"))
}

/// A prefix watch of `path`, once etcd has confirmed that it is created.
pub async fn watch(client: &mut Client, path: &str) -> Result<WatchStream, String> {
    let options = WatchOptions::new().with_prefix();
    let mut stream = client
        .watch(path, Some(options))
        .await
        .map_err(|e| e.to_string())?;
    match stream.message().await {
        Ok(Some(response)) if response.created() => Ok(stream),
        other => Err(format!("etcd watch: expected created, got {other:?}")),
    }
}

/// The next change the watch reports, skipping responses without events.
pub async fn next_change(stream: &mut WatchStream) -> Result<Change, String> {
    loop {
        match stream.message().await {
            Ok(None) => return Err("etcd watch ended".to_owned()),
            Err(e) => return Err(format!("etcd watch: {e}")),
            Ok(Some(r)) if r.canceled() => return Err("etcd watch canceled".to_owned()),
            Ok(Some(r)) if r.events().is_empty() => continue,
            Ok(Some(r)) => {
                let deleted = r
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete);
                return Ok(if deleted {
                    Change::Deleted
                } else {
                    Change::Updated
                });
            }
        }
    }
}

/// Puts `path` on a lease of `timeout` on `server`, calls `ready` with the TTL etcd granted, and
/// keeps the lease alive from then on.
pub async fn hold_ephemeral(
    server: SocketAddr,
    path: &str,
    timeout: Duration,
    ready: impl FnOnce(Duration),
) {
    let mut client = connect(&[server], Duration::from_secs(10))
        .await
        .expect("connect");
    let lease = client
        .lease_grant(timeout.as_secs() as i64, None)
        .await
        .expect("lease");
    let put = PutOptions::new().with_lease(lease.id());
    client
        .put(path, crate::VALUE, Some(put))
        .await
        .expect("put");
    let (mut keeper, mut acks) = client
        .lease_keep_alive(lease.id())
        .await
        .expect("keep alive");
    ready(Duration::from_secs(lease.ttl() as u64));
    // As etcd's own clients do: a keep-alive every third of the TTL.
    loop {
        keeper.keep_alive().await.expect("keep alive");
        acks.message().await.expect("keep-alive ack");
        tokio::time::sleep(timeout / 3).await;
    }
}

/// The key prefix of a service's providers: the same path as rmif's, with a trailing `/` so
/// that the prefix matches this service's providers only.
fn providers_prefix(service: &str) -> String {
    format!("{}/", providers_path(&ServiceKey::new(service)))
}

/// A lease kept alive (a keep-alive every third of its TTL, as etcd's own clients do) and the
/// provider keys put on it: the etcd registries of Go's RPC frameworks announce providers so.
pub struct ProviderHost {
    client: Client,
    lease: i64,
    prefix: String,
    keeper: tokio::task::JoinHandle<()>,
}

impl ProviderHost {
    pub async fn open(member: SocketAddr, service: &str) -> Result<ProviderHost, String> {
        let mut client = connect(&[member], Duration::from_secs(10)).await?;
        let lease = client
            .lease_grant(DISCOVERY_SESSION.as_secs() as i64, None)
            .await
            .map_err(|e| format!("etcd lease: {e}"))?
            .id();
        let (mut keeper, mut acks) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| format!("etcd keep-alive: {e}"))?;
        let keeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(DISCOVERY_SESSION / 3).await;
                if keeper.keep_alive().await.is_err() || acks.message().await.is_err() {
                    return;
                }
            }
        });
        Ok(ProviderHost {
            client,
            lease,
            prefix: providers_prefix(service),
            keeper,
        })
    }

    pub async fn announce(&self, addr: SocketAddr) -> Result<(), String> {
        let on_lease = PutOptions::new().with_lease(self.lease);
        let key = format!("{}{addr}", self.prefix);
        self.client
            .clone()
            .put(key, provider_metadata(addr).to_json(), Some(on_lease))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub async fn withdraw(&self, addr: SocketAddr) -> Result<(), String> {
        let key = format!("{}{addr}", self.prefix);
        self.client
            .clone()
            .delete(key, None)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Revokes the lease, which deletes its keys.
    pub async fn close(mut self) {
        self.keeper.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

/// A consumer with a client (a gRPC connection) of its own: the providers under the prefix
/// read once, then a prefix watch from the next revision, each event applied to the list with
/// its value parsed as provider metadata.
pub struct Consumer {
    _client: Client,
    stream: WatchStream,
    prefix: String,
    providers: HashMap<SocketAddr, ProviderMetadata>,
}

impl Consumer {
    /// Returns once the watch is created.
    pub async fn start(member: SocketAddr, service: &str) -> Result<Consumer, String> {
        let mut client = connect(&[member], Duration::from_secs(10)).await?;
        let prefix = providers_prefix(service);
        let listed = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| format!("etcd range: {e}"))?;
        let revision = listed.header().map_or(0, |h| h.revision());
        let mut consumer = Consumer {
            stream: watch_from(&mut client, &prefix, revision + 1).await?,
            _client: client,
            prefix,
            providers: HashMap::new(),
        };
        for kv in listed.kvs() {
            consumer.put(kv.key(), kv.value());
        }
        Ok(consumer)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        let addr = self.addr_of(key);
        if let (Some(addr), Ok(metadata)) = (addr, ProviderMetadata::parse(value)) {
            self.providers.insert(addr, metadata);
        }
    }

    fn addr_of(&self, key: &[u8]) -> Option<SocketAddr> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(self.prefix.as_str())?.parse().ok()
    }

    pub fn holds(&self, addr: SocketAddr) -> bool {
        self.providers.contains_key(&addr)
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Applies the next watch response that has events.
    pub async fn changed(&mut self) -> Result<(), String> {
        loop {
            let response = match self.stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Err("etcd watch ended".to_owned()),
                Err(e) => return Err(format!("etcd watch: {e}")),
            };
            if response.canceled() {
                return Err("etcd watch canceled".to_owned());
            }
            if response.events().is_empty() {
                continue;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => self.put(kv.key(), kv.value()),
                    EventType::Delete => {
                        if let Some(addr) = self.addr_of(kv.key()) {
                            self.providers.remove(&addr);
                        }
                    }
                }
            }
            return Ok(());
        }
    }
}

/// A prefix watch of `prefix` from `revision`, once etcd has confirmed that it is created.
async fn watch_from(
    client: &mut Client,
    prefix: &str,
    revision: i64,
) -> Result<WatchStream, String> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision);
    let mut stream = client
        .watch(prefix, Some(options))
        .await
        .map_err(|e| e.to_string())?;
    match stream.message().await {
        Ok(Some(response)) if response.created() => Ok(stream),
        other => Err(format!("etcd watch: expected created, got {other:?}")),
    }
}
