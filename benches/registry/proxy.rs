//! A counting TCP proxy between clients and one member, on loopback: it forwards every byte both
//! ways and counts them, so that what a registry sends a consumer is measured on the socket,
//! framing and all, whatever the system's protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Bytes forwarded each way, and when the last of them went.
struct Counts {
    /// Member to client.
    down: AtomicU64,
    /// Client to member.
    up: AtomicU64,
    /// Nanoseconds after `since` of the last byte forwarded either way.
    last: AtomicU64,
    since: Instant,
}

impl Counts {
    fn add(&self, counter: &AtomicU64, bytes: usize) {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        let now = self.since.elapsed().as_nanos() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }
}

/// Listens on a loopback port and forwards each connection to the member it was made for.
/// Dropping it closes every connection it forwards.
pub struct Proxy {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(member: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts {
            down: AtomicU64::new(0),
            up: AtomicU64::new(0),
            last: AtomicU64::new(0),
            since: Instant::now(),
        });
        let task = tokio::spawn(accept(listener, member, counts.clone()));
        Ok(Proxy { addr, counts, task })
    }

    /// Bytes forwarded so far: (member to client, client to member).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.counts.down.load(Ordering::Relaxed),
            self.counts.up.load(Ordering::Relaxed),
        )
    }

    /// Waits until no byte has gone either way for `quiet`; false if that did not happen within
    /// `limit` (the connections kept talking).
    pub async fn quiet(&self, quiet: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let last = Duration::from_nanos(self.counts.last.load(Ordering::Relaxed));
            let idle = self.counts.since.elapsed().saturating_sub(last);
            if idle >= quiet {
                return true;
            }
            if Instant::now() + (quiet - idle) > deadline {
                return false;
            }
            tokio::time::sleep(quiet - idle).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the forwarding tasks (a JoinSet): they go with it.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, member: SocketAddr, counts: Arc<Counts>) {
    let mut pumps = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, most likely: give the closing connections a moment.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(server) = TcpStream::connect(member).await else {
            continue; // the client sees its connection close, as if the member were down
        };
        // Without TCP_NODELAY on the proxy's own sockets, Nagle's algorithm would hold back
        // small messages that the direct connection sends at once.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        pumps.spawn(pump(
            server_read,
            client_write,
            counts.clone(),
            Direction::Down,
        ));
        pumps.spawn(pump(
            client_read,
            server_write,
            counts.clone(),
            Direction::Up,
        ));
        // Reap the pumps of closed connections.
        while pumps.try_join_next().is_some() {}
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Down,
    Up,
}

/// Copies `from` to `to`, counting, until either side closes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    counts: Arc<Counts>,
    way: Direction,
) {
    let counter = match way {
        Direction::Down => &counts.down,
        Direction::Up => &counts.up,
    };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        counts.add(counter, read);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
