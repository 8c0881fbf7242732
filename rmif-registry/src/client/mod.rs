//! The registry client: an async API over the [`Registry`] service that sticks to one member,
//! fails over to the others (all through the one loop in `failover`), and never reads a state
//! older than one it has already seen.

mod failover;
mod policy;
mod session;
mod watch;

pub use policy::{FailoverPolicy, OnRetry, RetryNotice};
pub use session::{Session, SessionState};
pub use watch::{NodeEvent, WatchEvents, WatchOptions, Watcher};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rmif_core::{Client, ConsumerConfig};
use tokio::time::Instant;

use crate::api::{
    ChildList, CreateRequest, Created, DeleteRequest, MemberStatus, MultiRequest, MultiResponse,
    NodeData, NodeStat, ReadRequest, Reflects, Registry, RegistryConsumer, SetRequest, Synced,
    WatchMode, Written,
};
use crate::error::RegistryError;
use crate::op::{Op, SessionCall};
use failover::{Plan, Retry};
use watch::SharedWatches;

/// How a [`RegistryClient`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time one operation may take, failovers included.
    pub timeout: Duration,
    /// Time one attempt on one member may take.
    pub attempt_timeout: Duration,
    /// Time to wait for a connection to a member.
    pub connect_timeout: Duration,
    /// Whether a request that a member cannot serve goes on to the other members until
    /// `timeout` ([`FailoverPolicy::UntilDeadline`], the default) or fails after trying each
    /// member once ([`FailoverPolicy::OnePass`]).
    pub failover: FailoverPolicy,
    /// Told when a request starts retrying on other members, once per request (the `rmif`
    /// command prints it, so that a wait is never silent); `None` by default.
    pub on_retry: Option<OnRetry>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            failover: FailoverPolicy::UntilDeadline,
            on_retry: None,
        }
    }
}

/// Options of [`RegistryClient::create`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateMode {
    /// Deleted when the session ends (needs a session).
    pub ephemeral: bool,
    /// A 10-digit sequence number is appended to the name.
    pub sequential: bool,
}

impl CreateMode {
    /// A persistent node.
    pub const PERSISTENT: CreateMode = CreateMode {
        ephemeral: false,
        sequential: false,
    };
    /// A persistent sequential node.
    pub const SEQUENTIAL: CreateMode = CreateMode {
        ephemeral: false,
        sequential: true,
    };
}

/// Read consistency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable: reflects every write acknowledged before the read started.
    #[default]
    Linearizable,
    /// From the member's applied state (never older than what this client has already seen).
    Stale,
}

struct Member {
    addr: SocketAddr,
    stub: RegistryConsumer,
}

/// A connection to a registry cluster. Cheap to clone.
///
/// Requests go to one member and move to the others when it fails (all through one failover
/// loop); reads never reflect a state older than one this client has already seen, whichever
/// member answers.
///
/// ```
/// use rmif_registry::{Consistency, CreateMode, RegistryClient, RegistryError};
/// # use rmif_registry_server::{RegistryConfig, RegistryServer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let data = tempfile::tempdir()?;
/// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
/// # let members = [member.client_addr()];
/// let client = RegistryClient::connect(&members);
/// client.create("/config", b"{}", CreateMode::PERSISTENT).await?;
/// // Compare-and-set: only if nobody changed it since version 0.
/// let written = client.set("/config", b"{\"debug\":true}", Some(0)).await?;
/// assert_eq!(written.stat.map(|s| s.version), Some(1));
/// let conflict = client.set("/config", b"{}", Some(0)).await.unwrap_err();
/// assert!(matches!(conflict, RegistryError::BadVersion { actual: 1, .. }));
/// let jobs = client.create("/job-", b"", CreateMode::SEQUENTIAL).await?;
/// assert_eq!(jobs.path, "/job-0000000000");
/// # member.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("servers", &self.servers())
            .field("preferred", &self.addr(self.preferred()))
            .field("last_zxid", &self.last_zxid())
            .finish_non_exhaustive()
    }
}

struct Inner {
    members: Vec<Member>,
    preferred: AtomicUsize,
    last_zxid: AtomicU64,
    options: ClientOptions,
    shared_watches: SharedWatches,
}

impl RegistryClient {
    /// A client for the members at `servers` (client API addresses). Connections are made on
    /// first use; must be called inside a tokio runtime.
    pub fn new(servers: &[SocketAddr], options: ClientOptions) -> Self {
        let members = servers
            .iter()
            .map(|&addr| {
                let config = ConsumerConfig {
                    static_providers: vec![addr],
                    timeout: options.attempt_timeout,
                    connect_timeout: options.connect_timeout,
                    retries: 0,
                    tick: Duration::from_millis(1000),
                    again: 3,
                    ..ConsumerConfig::default()
                };
                Member {
                    addr,
                    stub: RegistryConsumer::new(&Client::with_static_providers(config)),
                }
            })
            .collect();
        RegistryClient {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(fastrand::usize(..servers.len().max(1))),
                last_zxid: AtomicU64::new(0),
                options,
                shared_watches: SharedWatches::default(),
            }),
        }
    }

    /// A client with default options.
    pub fn connect(servers: &[SocketAddr]) -> Self {
        Self::new(servers, ClientOptions::default())
    }

    /// The newest zxid this client has seen.
    pub fn last_zxid(&self) -> u64 {
        self.inner.last_zxid.load(Ordering::Acquire)
    }

    fn saw(&self, zxid: u64) {
        self.inner.last_zxid.fetch_max(zxid, Ordering::AcqRel);
    }

    /// Sends `request` to the preferred member, failing over to the others as `retry` allows;
    /// the member that answers becomes the preferred one, and the answer's zxid is recorded.
    async fn request<R, T, F, Fut>(
        &self,
        retry: Retry,
        request: R,
        send: F,
    ) -> Result<T, RegistryError>
    where
        R: Clone,
        T: Reflects,
        F: Fn(RegistryConsumer, R) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let plan = Plan {
            start: self.preferred(),
            retry,
            deadline: Some(Instant::now() + self.inner.options.timeout),
        };
        let (answer, member) = failover::run(self, plan, |member| {
            send(self.stub(member), request.clone())
        })
        .await?;
        self.inner.preferred.store(member, Ordering::Relaxed);
        self.saw(answer.zxid());
        Ok(answer)
    }

    fn read_request(&self, path: &str, consistency: Consistency) -> ReadRequest {
        ReadRequest {
            path: path.to_owned(),
            stale: consistency == Consistency::Stale,
            min_zxid: self.last_zxid(),
        }
    }

    /// Creates a node; returns its final path (with the sequence number, if any).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<Created, RegistryError> {
        self.create_in(path, data, mode, None).await
    }

    /// Creates a node within a session (deduplicated by the session call).
    pub async fn create_in(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        session: Option<SessionCall>,
    ) -> Result<Created, RegistryError> {
        let request = CreateRequest {
            path: path.to_owned(),
            data: data.to_vec(),
            ephemeral: mode.ephemeral,
            sequential: mode.sequential,
            session,
        };
        // A write within a session is deduplicated by its request number.
        let retry = if session.is_some() {
            Retry::Retryable
        } else {
            Retry::IfNotPerformed
        };
        self.request(
            retry,
            request,
            |stub, r| async move { stub.create(r).await },
        )
        .await
    }

    /// Creates `path` and every missing ancestor as empty persistent nodes, as `mkdir -p`
    /// does; nodes that exist are left as they are.
    pub async fn create_path(&self, path: &str) -> Result<(), RegistryError> {
        crate::path::validate(path)?;
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            match self.create(&prefix, b"", CreateMode::PERSISTENT).await {
                Ok(_) | Err(RegistryError::NodeExists { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Creates a node like [`RegistryClient::create`], first creating its missing ancestors
    /// as empty persistent nodes ([`RegistryClient::create_path`]).
    ///
    /// ```
    /// use rmif_registry::{Consistency, CreateMode, RegistryClient};
    /// # use rmif_registry_server::{RegistryConfig, RegistryServer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let data = tempfile::tempdir()?;
    /// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
    /// # let members = [member.client_addr()];
    /// let client = RegistryClient::connect(&members);
    /// client.create_with_parents("/apps/shop/config", b"v1", CreateMode::PERSISTENT).await?;
    /// assert_eq!(client.get("/apps/shop", Consistency::Linearizable).await?.data, b"");
    /// # member.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn create_with_parents(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<Created, RegistryError> {
        crate::path::validate(path)?;
        let parent = crate::path::parent(path);
        if parent != "/" {
            self.create_path(parent).await?;
        }
        self.create(path, data, mode).await
    }

    /// Replaces a node's data, if its version is `version` (when given).
    pub async fn set(
        &self,
        path: &str,
        data: &[u8],
        version: Option<u32>,
    ) -> Result<Written, RegistryError> {
        let request = SetRequest {
            path: path.to_owned(),
            data: data.to_vec(),
            version,
            session: None,
        };
        self.request(Retry::IfNotPerformed, request, |stub, r| async move {
            stub.set(r).await
        })
        .await
    }

    /// Deletes a node, if its version is `version` (when given).
    pub async fn delete(&self, path: &str, version: Option<u32>) -> Result<Written, RegistryError> {
        let request = DeleteRequest {
            path: path.to_owned(),
            version,
            session: None,
        };
        self.request(Retry::IfNotPerformed, request, |stub, r| async move {
            stub.delete(r).await
        })
        .await
    }

    /// Applies `ops` atomically.
    pub async fn multi(&self, ops: Vec<Op>) -> Result<MultiResponse, RegistryError> {
        let request = MultiRequest { ops, session: None };
        self.request(Retry::IfNotPerformed, request, |stub, r| async move {
            stub.multi(r).await
        })
        .await
    }

    /// Reads a node's data and stat.
    pub async fn get(
        &self,
        path: &str,
        consistency: Consistency,
    ) -> Result<NodeData, RegistryError> {
        let request = self.read_request(path, consistency);
        self.request(Retry::Retryable, request, |stub, r| async move {
            stub.get(r).await
        })
        .await
    }

    /// Lists a node's children.
    pub async fn children(
        &self,
        path: &str,
        consistency: Consistency,
    ) -> Result<ChildList, RegistryError> {
        let request = self.read_request(path, consistency);
        self.request(Retry::Retryable, request, |stub, r| async move {
            stub.children(r).await
        })
        .await
    }

    /// Reads a node's stat.
    pub async fn stat(
        &self,
        path: &str,
        consistency: Consistency,
    ) -> Result<NodeStat, RegistryError> {
        let request = self.read_request(path, consistency);
        self.request(Retry::Retryable, request, |stub, r| async move {
            stub.stat(r).await
        })
        .await
    }

    /// A quorum barrier on the member this client talks to.
    pub async fn sync(&self) -> Result<Synced, RegistryError> {
        self.request(
            Retry::Retryable,
            (),
            |stub, ()| async move { stub.sync().await },
        )
        .await
    }

    /// The status of the member at `addr` (one of this client's servers), without failover.
    pub async fn member_status(&self, addr: SocketAddr) -> Result<MemberStatus, RegistryError> {
        let member = self
            .inner
            .members
            .iter()
            .find(|m| m.addr == addr)
            .ok_or_else(|| RegistryError::UnknownServer {
                addr: addr.to_string(),
            })?;
        member.stub.member_status().await
    }

    /// Sends calls (and new sessions and watches) to the member at `addr` first.
    pub fn prefer(&self, addr: SocketAddr) {
        if let Some(index) = self.inner.members.iter().position(|m| m.addr == addr) {
            self.inner.preferred.store(index, Ordering::Relaxed);
        }
    }

    /// Number of members this client knows.
    pub(crate) fn member_count(&self) -> usize {
        self.inner.members.len()
    }

    /// The stub of member `index` (modulo the number of members).
    pub(crate) fn stub(&self, index: usize) -> RegistryConsumer {
        let members = &self.inner.members;
        members[index % members.len()].stub.clone()
    }

    /// Address of member `index`.
    pub(crate) fn addr(&self, index: usize) -> SocketAddr {
        let members = &self.inner.members;
        members[index % members.len()].addr
    }

    /// The member calls go to first.
    pub(crate) fn preferred(&self) -> usize {
        self.inner.preferred.load(Ordering::Relaxed)
    }

    /// The persistent watches this client shares between its watchers.
    pub(crate) fn shared_watches(&self) -> &SharedWatches {
        &self.inner.shared_watches
    }

    /// Records that `zxid` was seen.
    pub(crate) fn observe(&self, zxid: u64) {
        self.saw(zxid);
    }

    /// The client's options.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Opens a session held by this client; its ephemeral nodes live as long as it does.
    /// Heartbeats keep it alive in the background, moving to another member when needed.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use rmif_registry::{Consistency, CreateMode, RegistryClient, SessionState};
    /// # use rmif_registry_server::{RegistryConfig, RegistryServer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let data = tempfile::tempdir()?;
    /// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
    /// # let members = [member.client_addr()];
    /// let client = RegistryClient::connect(&members);
    /// let session = client.open_session(Duration::from_secs(5)).await?;
    /// let ephemeral = CreateMode { ephemeral: true, sequential: false };
    /// session.create("/worker-1", b"busy", ephemeral).await?;
    /// assert_eq!(session.state(), SessionState::Connected);
    /// // Closing the session (or its expiry, if this process died) deletes the node.
    /// session.close().await?;
    /// assert!(client.get("/worker-1", Consistency::Linearizable).await.is_err());
    /// # member.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn open_session(&self, timeout: Duration) -> Result<Session, RegistryError> {
        Session::open(self.clone(), timeout).await
    }

    /// Follows changes of `path` (see [`WatchMode`]). The watcher resumes after failovers
    /// without missing a change (or with an explicit resync).
    ///
    /// ```
    /// use rmif_registry::api::WatchMode;
    /// use rmif_registry::{ChangeKind, CreateMode, RegistryClient};
    /// # use rmif_registry_server::{RegistryConfig, RegistryServer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let data = tempfile::tempdir()?;
    /// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
    /// # let members = [member.client_addr()];
    /// let client = RegistryClient::connect(&members);
    /// client.create("/jobs", b"", CreateMode::PERSISTENT).await?;
    /// let mut watcher = client.watch("/jobs", WatchMode::Recursive).await?;
    /// let armed = watcher.next().await.expect("open")?;
    /// assert!(armed.is_armed(), "the first message says from which zxid it follows");
    /// client.create("/jobs/a", b"", CreateMode::PERSISTENT).await?;
    /// let change = watcher.next().await.expect("open")?;
    /// assert!(change.events.iter().any(|e| e.kind == ChangeKind::Created && e.path == "/jobs/a"));
    /// # member.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, path: &str, mode: WatchMode) -> Result<Watcher, RegistryError> {
        self.watch_with(path, mode.into()).await
    }

    /// Follows changes of `path` as `options` say: with the data of created and changed nodes
    /// in the events, and starting from the watched nodes' state, following a list costs no
    /// read at all (see [`WatchOptions`]).
    pub async fn watch_with(
        &self,
        path: &str,
        options: WatchOptions,
    ) -> Result<Watcher, RegistryError> {
        Watcher::start(self.clone(), path, options).await
    }

    /// Follows changes of `path` (a [`WatchMode::Persistent`] or [`WatchMode::Recursive`]
    /// watch) as plain events: no armed message, and a resync turned into the events it stands
    /// for (see [`WatchEvents`] for what can and cannot be rebuilt). A one-shot mode is refused
    /// with [`RegistryError::BadRequest`].
    pub async fn watch_events(
        &self,
        path: &str,
        mode: WatchMode,
    ) -> Result<WatchEvents, RegistryError> {
        self.watch_events_with(path, mode.into()).await
    }

    /// [`RegistryClient::watch_events`] with the data of created and changed nodes in the
    /// events, if `options` ask for it ([`WatchOptions::with_data`]); the watch always starts
    /// from the watched nodes' state, whatever [`WatchOptions::initial_state`] says.
    pub async fn watch_events_with(
        &self,
        path: &str,
        options: WatchOptions,
    ) -> Result<WatchEvents, RegistryError> {
        WatchEvents::start(self.clone(), path, options).await
    }

    /// The client API addresses this client knows.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.inner.members.iter().map(|m| m.addr).collect()
    }
}
