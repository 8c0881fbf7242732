//! ZooKeeper: its members' configuration and command lines, how to tell its leader, and every
//! operation the scenarios make, through `zookeeper-client`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

use crate::process::Launch;
use crate::servers::Servers;
use crate::system::Change;
use crate::system::{MemberPorts, Role};

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
