//! ZooKeeper: its members' configuration and command lines, how to tell its leader, and every
//! operation the scenarios make, through `zookeeper-client`; for discovery, Dubbo 2.x's layout
//! and recipe (provider URLs as child names, consumers re-reading the children on every
//! one-shot child watch).

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

use crate::process::Launch;
use crate::servers::Servers;
use crate::system::Change;
use crate::system::{DISCOVERY_SESSION, MemberPorts, Role, provider_metadata};

/// Each member's data directory, zoo.cfg and command line (Debian's jars on the JVM).
pub fn launches(servers: &Servers, dir: &Path, ports: &MemberPorts) -> Vec<Launch> {
    let ensemble: String = (0..3)
        .map(|i| {
            format!(
                "server.{}=127.0.0.1:{}:{}\n",
                i + 1,
                ports.peers[i],
                ports.elections[i]
            )
        })
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
                    ports.clients[i].port(),
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

/// What the member at `addr` says it is (its `srvr` four-letter word), if it knows a leader.
pub async fn role(addr: SocketAddr) -> Option<Role> {
    let srvr = four_letter_word(addr, "srvr").await.ok()?;
    let mode = srvr.lines().find_map(|l| l.strip_prefix("Mode: "))?;
    match mode.trim() {
        "leader" => Some(Role::Leader),
        "follower" => Some(Role::Follower),
        _ => None,
    }
}

/// ZooKeeper's admin commands: send four letters, read until the server closes.
async fn four_letter_word(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(word.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// A client of `members`, with a session of `session`.
pub async fn connect(members: &[SocketAddr], session: Duration) -> Result<zk::Client, String> {
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

/// Whether the client can still be used: a session, once expired or closed, is over for good.
pub fn usable(client: &zk::Client) -> bool {
    !client.state().is_terminated()
}

pub async fn create(client: &zk::Client, path: &str, value: &[u8]) -> Result<(), String> {
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create(path, value, &persistent)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

pub async fn set(client: &zk::Client, path: &str, value: &[u8]) -> Result<(), String> {
    client
        .set_data(path, value, None)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `getData`, which the member serves from its own state; `sync` first makes it reflect every
/// write committed before (the documented recipe for a linearizable read).
pub async fn read(client: &zk::Client, path: &str, linearizable: bool) -> Result<Vec<u8>, String> {
    if linearizable {
        client.sync(path).await.map_err(|e| e.to_string())?;
    }
    client
        .get_data(path)
        .await
        .map(|(data, _)| data)
        .map_err(|e| e.to_string())
}

/// A persistent watch of `path` (`addWatch`), armed when this returns.
pub async fn watch(client: &zk::Client, path: &str) -> Result<zk::PersistentWatcher, String> {
    client
        .watch(path, zk::AddWatchMode::Persistent)
        .await
        .map_err(|e| e.to_string())
}

/// The next change the watch reports, skipping session events short of the session's end.
pub async fn next_change(watcher: &mut zk::PersistentWatcher) -> Result<Change, String> {
    loop {
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

/// Creates `path` as an ephemeral node of a session of `timeout` on `server`, calls `ready` with
/// the timeout the ensemble granted, and keeps the session alive from then on.
pub async fn hold_ephemeral(
    server: SocketAddr,
    path: &str,
    timeout: Duration,
    ready: impl FnOnce(Duration),
) {
    let client = connect(&[server], timeout).await.expect("connect");
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    client
        .create(path, crate::VALUE, &ephemeral)
        .await
        .expect("create ephemeral");
    ready(client.session_timeout());
    std::future::pending::<()>().await;
}

/// Dubbo's node for a service's providers.
fn providers_path(service: &str) -> String {
    format!("/dubbo/{service}/providers")
}

/// Dubbo's node for a service's consumers.
fn consumers_path(service: &str) -> String {
    format!("/dubbo/{service}/consumers")
}

/// A provider's node name as Dubbo 2.x writes it: its whole URL, percent-encoded, with the
/// same information as the other systems' JSON metadata. The node's data stays empty: consumers
/// learn everything from the names, so that one `getChildren` is the whole list.
fn provider_name(service: &str, addr: SocketAddr) -> String {
    let m = provider_metadata(addr);
    let url = format!(
        "dubbo://{addr}/{service}?anyhost=true&application={}&compression={}&methods={}\
         &release={}&serialization={}&side=provider&timestamp={}&version={}&weight={}&zone=zone-a",
        m.application,
        m.compressions.join(","),
        m.methods.join(","),
        m.rmif_version,
        m.serializations.join(","),
        m.start_time_ms,
        m.version,
        m.weight,
    );
    percent_encode(&url)
}

/// The provider address in a node name of [`provider_name`]'s form.
fn provider_addr(name: &str) -> Option<SocketAddr> {
    let url = percent_decode(name)?;
    let rest = url.strip_prefix("dubbo://")?;
    rest.split('/').next()?.parse().ok()
}

/// A consumer's node name, as Dubbo registers its consumers (`id` tells this process's
/// consumers apart).
fn consumer_name(service: &str, id: usize) -> String {
    percent_encode(&format!(
        "consumer://127.0.0.1/{service}?application=bench-consumer&category=consumers\
         &check=false&consumer={id}&pid={}&side=consumer&timestamp=1764000000000",
        std::process::id()
    ))
}

/// Everything but unreserved characters as %XX, as Java's URLEncoder does for Dubbo.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._*".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// A session holding a service's provider nodes, as a Dubbo provider's registry client does.
pub struct ProviderHost {
    client: zk::Client,
    service: String,
}

impl ProviderHost {
    /// Connects and creates Dubbo's nodes for the service (providers and consumers).
    pub async fn open(member: SocketAddr, service: &str) -> Result<ProviderHost, String> {
        let client = connect(&[member], DISCOVERY_SESSION).await?;
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        for path in [providers_path(service), consumers_path(service)] {
            client
                .mkdir(&path, &persistent)
                .await
                .map_err(|e| format!("zookeeper mkdir {path}: {e}"))?;
        }
        Ok(ProviderHost {
            client,
            service: service.to_owned(),
        })
    }

    fn path(&self, addr: SocketAddr) -> String {
        format!(
            "{}/{}",
            providers_path(&self.service),
            provider_name(&self.service, addr)
        )
    }

    pub async fn announce(&self, addr: SocketAddr) -> Result<(), String> {
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        self.client
            .create(&self.path(addr), b"", &ephemeral)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub async fn withdraw(&self, addr: SocketAddr) -> Result<(), String> {
        self.client
            .delete(&self.path(addr), None)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn registered_consumers(&self) -> Result<usize, String> {
        self.client
            .list_children(&consumers_path(&self.service))
            .await
            .map(|children| children.len())
            .map_err(|e| e.to_string())
    }

    /// Dropping the last handle of a client closes its session.
    pub fn close(self) {}
}

/// A consumer as Dubbo 2.x's ZooKeeper registry runs one: a session of its own, its consumer
/// node, and the providers' children read with a one-shot child watch, read again (and the
/// watch set again) on every notification, each child's name parsed back into a provider URL.
pub struct Consumer {
    client: zk::Client,
    path: String,
    providers: HashSet<SocketAddr>,
    watcher: Option<zk::OneshotWatcher>,
}

impl Consumer {
    /// Registers the consumer and reads the list; returns with the watch set.
    pub async fn start(member: SocketAddr, service: &str, id: usize) -> Result<Consumer, String> {
        let client = connect(&[member], DISCOVERY_SESSION).await?;
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let node = format!("{}/{}", consumers_path(service), consumer_name(service, id));
        client
            .create(&node, b"", &ephemeral)
            .await
            .map_err(|e| format!("zookeeper register consumer: {e}"))?;
        let mut consumer = Consumer {
            client,
            path: providers_path(service),
            providers: HashSet::new(),
            watcher: None,
        };
        consumer.list().await?;
        Ok(consumer)
    }

    /// `getChildren` with a watch, and the list rebuilt from the names.
    async fn list(&mut self) -> Result<(), String> {
        let (children, _, watcher) = self
            .client
            .get_and_watch_children(&self.path)
            .await
            .map_err(|e| format!("zookeeper getChildren: {e}"))?;
        self.providers = children
            .iter()
            .filter_map(|name| provider_addr(name))
            .collect();
        self.watcher = Some(watcher);
        Ok(())
    }

    pub fn holds(&self, addr: SocketAddr) -> bool {
        self.providers.contains(&addr)
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Waits for the watch to fire, then reads the children again (setting the next watch).
    pub async fn changed(&mut self) -> Result<(), String> {
        let watcher = self
            .watcher
            .take()
            .ok_or("zookeeper: no watch set (an earlier read failed)")?;
        let event = watcher.changed().await;
        if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
            return Err(format!("zookeeper session {:?}", event.session_state));
        }
        self.list().await
    }
}
