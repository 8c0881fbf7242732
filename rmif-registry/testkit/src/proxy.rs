//! A fault-injecting TCP proxy the tests own: every link between two members (and between a
//! client and a member) can pass traffic, drop it (connections cut and refused), or delay it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Pass,
    /// Existing connections are cut and new ones refused.
    Drop,
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
}

/// One proxied link: listens on `addr`, forwards to a target.
#[derive(Debug)]
pub struct Link {
    pub addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A link forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listener");
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(LinkMode::Pass);
        let modes = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let modes = modes.subscribe();
                if *modes.borrow() == LinkMode::Drop {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(forward(inbound, target, modes));
            }
        });
        Link { addr, mode, task }
    }

    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(inbound: TcpStream, target: SocketAddr, modes: watch::Receiver<LinkMode>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let there = pump(in_read, out_write, modes.clone());
    let back = pump(out_read, in_write, modes);
    // Either direction ending (or the link dropping) ends both.
    tokio::select! {
        _ = there => {}
        _ = back => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut modes: watch::Receiver<LinkMode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if *modes.borrow() == LinkMode::Drop {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = modes.changed() => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mode = *modes.borrow();
        match mode {
            LinkMode::Drop => return,
            LinkMode::Delay(delay) => tokio::time::sleep(delay).await,
            LinkMode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Links between every ordered pair of members (`from` dials `to` through `links[from][to]`) and
/// from clients to each member.
#[derive(Debug)]
pub struct Network {
    /// `peer[i][j]`: member i+1's connection to member j+1 (None on the diagonal).
    pub peer: Vec<Vec<Option<Link>>>,
    /// `client[i]`: clients' connections to member i+1.
    pub client: Vec<Link>,
    pub state: Mutex<String>,
}

impl Network {
    pub async fn start(peer_targets: &[SocketAddr], client_targets: &[SocketAddr]) -> Arc<Network> {
        let n = peer_targets.len();
        let mut peer = Vec::with_capacity(n);
        for from in 0..n {
            let mut row = Vec::with_capacity(n);
            for (to, target) in peer_targets.iter().enumerate() {
                row.push(if from == to {
                    None
                } else {
                    Some(Link::start(*target).await)
                });
            }
            peer.push(row);
        }
        let mut client = Vec::with_capacity(n);
        for target in client_targets {
            client.push(Link::start(*target).await);
        }
        Arc::new(Network {
            peer,
            client,
            state: Mutex::new("healthy".to_owned()),
        })
    }

    /// Sets the link from member `from` to member `to` (ids from 1).
    pub fn set_peer(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(link) = &self.peer[(from - 1) as usize][(to - 1) as usize] {
            link.set(mode);
        }
    }

    /// Cuts `isolated` off from every other member, both ways.
    pub fn isolate(&self, isolated: u64) {
        let n = self.peer.len() as u64;
        for other in (1..=n).filter(|o| *o != isolated) {
            self.set_peer(isolated, other, LinkMode::Drop);
            self.set_peer(other, isolated, LinkMode::Drop);
        }
        *self.state.lock().unwrap() = format!("member {isolated} isolated");
    }

    /// Drops traffic from `from` to every other member only (it still hears them).
    pub fn mute(&self, from: u64) {
        let n = self.peer.len() as u64;
        for other in (1..=n).filter(|o| *o != from) {
            self.set_peer(from, other, LinkMode::Drop);
        }
        *self.state.lock().unwrap() = format!("member {from} muted one-way");
    }

    /// Delays every link between members.
    pub fn slow(&self, delay: Duration) {
        for row in &self.peer {
            for link in row.iter().flatten() {
                link.set(LinkMode::Delay(delay));
            }
        }
        *self.state.lock().unwrap() = format!("all peer links delayed {delay:?}");
    }

    /// Cuts clients off from member `id`.
    pub fn cut_clients(&self, id: u64) {
        self.client[(id - 1) as usize].set(LinkMode::Drop);
        *self.state.lock().unwrap() = format!("clients cut off from member {id}");
    }

    /// Everything passes again.
    pub fn heal(&self) {
        for row in &self.peer {
            for link in row.iter().flatten() {
                link.set(LinkMode::Pass);
            }
        }
        for link in &self.client {
            link.set(LinkMode::Pass);
        }
        *self.state.lock().unwrap() = "healthy".to_owned();
    }
}
