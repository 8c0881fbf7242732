//! etcd: its members' command lines, how to tell its leader, and every operation the scenarios
//! make, through `etcd-client` (gRPC).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions, WatchStream};

use crate::process::{Launch, loopback};
use crate::servers::Servers;
use crate::system::Change;
use crate::system::{MemberPorts, Role};

/// Each member's command line: default timing (100 ms heartbeat, 1 s election timeout) and fsync.
pub fn launches(servers: &Servers, dir: &Path, ports: &MemberPorts) -> Vec<Launch> {
    let cluster = (0..3)
        .map(|i| format!("m{}=http://{}", i + 1, loopback(ports.peers[i])))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let client_url = format!("http://{}", ports.clients[i]);
            let peer_url = format!("http://{}", loopback(ports.peers[i]));
            let data = dir.join(format!("etcd-{}", i + 1));
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
