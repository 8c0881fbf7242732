//! Load shared by the scenarios that fill a cluster or keep it writing: clients each with their
//! own connection (client i on member i mod 3), creating nodes until a count is reached or a
//! deadline passes, with when each write completed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::future::join_all;

use crate::client::Conn;
use crate::cluster::Cluster;

/// `count` clients, client i connected to member i mod 3; panics naming the client that could
/// not connect.
pub async fn connections(cluster: &Cluster, count: usize) -> Vec<Conn> {
    join_all((0..count).map(|i| Conn::to(cluster.system, cluster.clients[i % 3])))
        .await
        .into_iter()
        .enumerate()
        .map(|(i, conn)| conn.unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect()
}

/// When the writers stop.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Once writes 0 to N-1 have been issued (and have completed).
    Count(u64),
    /// Once this moment has passed.
    Deadline(Instant),
}

/// The node write `seq` creates: its path and value.
pub type NodeOf = Arc<dyn Fn(u64) -> (String, Vec<u8>) + Send + Sync>;

/// What the writers did.
#[derive(Debug, Default)]
pub struct Written {
    /// When each successful write completed, in order (when asked for).
    pub completions: Vec<Instant>,
    /// Successful writes.
    pub succeeded: u64,
    /// Failed writes, and the first failure.
    pub failed: u64,
    pub first_failure: Option<String>,
}

impl Written {
    /// Panics, naming the first failure, if any write failed: the scenarios that fill a cluster
    /// measure nothing meaningful on a cluster missing writes.
    pub fn assert_complete(&self, what: &str) {
        assert!(
            self.failed == 0,
            "{what}: {} of {} writes failed, the first with: {}",
            self.failed,
            self.failed + self.succeeded,
            self.first_failure.as_deref().unwrap_or("?")
        );
    }
}

/// `clients` clients creating `node(seq)` for seq 0, 1, 2, … (each write number taken once,
/// across the clients) until `until`; with `times`, when each write completed.
pub async fn create_nodes(
    cluster: &Cluster,
    clients: usize,
    node: NodeOf,
    until: Until,
    times: bool,
) -> Written {
    let conns = connections(cluster, clients).await;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(writer(conn, node.clone(), next.clone(), until, times)))
        .collect();
    let mut written = Written::default();
    for task in tasks {
        let part = task.await.expect("writer task panicked");
        written.completions.extend(part.completions);
        written.succeeded += part.succeeded;
        written.failed += part.failed;
        if written.first_failure.is_none() {
            written.first_failure = part.first_failure;
        }
    }
    written.completions.sort_unstable();
    written
}

/// One client's writes.
async fn writer(
    mut conn: Conn,
    node: NodeOf,
    next: Arc<AtomicU64>,
    until: Until,
    times: bool,
) -> Written {
    let mut written = Written::default();
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        match until {
            Until::Count(count) if seq >= count => return written,
            Until::Deadline(at) if Instant::now() >= at => return written,
            _ => {}
        }
        let (path, value) = node(seq);
        match conn.create(&path, &value).await {
            Ok(()) => {
                written.succeeded += 1;
                if times {
                    written.completions.push(Instant::now());
                }
            }
            Err(error) => {
                written.failed += 1;
                written
                    .first_failure
                    .get_or_insert(format!("{path}: {error}"));
            }
        }
    }
}
