//! A client session: heartbeats in the background, a state the application can follow, and
//! requests that survive a failover. A request goes through the client's failover loop with an
//! attempt that first attaches the session (with its secret) to the member it is about to use,
//! unless it is known to be attached there already; a retried request keeps its request number,
//! which the registry applies only once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::failover::{self, Plan, Retry};
use super::{CreateMode, RegistryClient};
use crate::api::{
    AttachSessionRequest, CreateRequest, Created, DeleteRequest, MultiRequest, MultiResponse,
    OpenSessionRequest, Reflects, Registry, RegistryConsumer, SessionGrant, SessionRequest,
    SetRequest, Written,
};
use crate::error::RegistryError;
use crate::op::Op;
use crate::op::SessionCall;

/// What the application knows about its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Heartbeats reach the registry.
    Connected,
    /// Contact is lost; the session may still be alive (the registry decides, not the client).
    Suspended,
    /// Contact is back after a suspension; the session and its ephemeral nodes survived.
    Reconnected,
    /// The registry expired the session; its ephemeral nodes are gone. It is never revived: open
    /// a new session and create the ephemeral nodes again.
    Expired,
    /// The application closed the session.
    Closed,
}

/// An open session. Dropping it stops the heartbeats (the registry then expires it after its
/// timeout); [`Session::close`] ends it at once.
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("timeout", &self.inner.timeout)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: RegistryClient,
    id: u64,
    secret: u64,
    timeout: Duration,
    /// Where the session is attached, as far as this client knows.
    attachment: Mutex<Attachment>,
    /// Serializes attaching, so that requests failing together move the session once.
    attaching: tokio::sync::Mutex<()>,
    /// `attachment.member`, readable without the lock.
    member: AtomicUsize,
    next_request: AtomicU64,
    /// When the last request the registry answered in this session was sent (so the registry
    /// heard from the session at that time or later).
    last_heard: Mutex<Instant>,
    state: watch::Sender<SessionState>,
    stop: CancellationToken,
}

/// The member holding the session for this client.
#[derive(Debug, Clone, Copy)]
struct Attachment {
    member: usize,
    /// Counts attachments, so that a failure seen on an old one does not discard a new one.
    epoch: u64,
    /// False once a request on it failed: the next request attaches the session again, on that
    /// member or another (a replaced connection needs that too: sessions are held per
    /// connection).
    valid: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

impl Session {
    pub(crate) async fn open(
        client: RegistryClient,
        timeout: Duration,
    ) -> Result<Self, RegistryError> {
        let request = OpenSessionRequest {
            timeout_ms: timeout.as_millis() as u64,
        };
        // Opening is a write outside any session; an orphan session left by a retry after an
        // unknown outcome holds nothing and simply expires.
        let opened_at = Instant::now();
        let plan = Plan {
            start: client.preferred(),
            retry: Retry::Retryable,
            deadline: Some(opened_at + client.options().timeout),
        };
        let (grant, member) = failover::run(&client, plan, |member| {
            let stub = client.stub(member);
            async move { stub.open_session(request).await }
        })
        .await?;
        client.observe(grant.zxid);
        let SessionGrant {
            session,
            secret,
            timeout_ms,
            ..
        } = grant;
        let inner = Arc::new(Inner {
            client,
            id: session,
            secret,
            timeout: Duration::from_millis(timeout_ms),
            attachment: Mutex::new(Attachment {
                member,
                epoch: 0,
                valid: true,
            }),
            attaching: tokio::sync::Mutex::new(()),
            member: AtomicUsize::new(member),
            next_request: AtomicU64::new(1),
            last_heard: Mutex::new(opened_at),
            state: watch::Sender::new(SessionState::Connected),
            stop: CancellationToken::new(),
        });
        tokio::spawn(heartbeats(inner.clone()));
        Ok(Session { inner })
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The timeout the registry granted.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The client address of the member holding the session now.
    pub fn member(&self) -> std::net::SocketAddr {
        self.inner
            .client
            .addr(self.inner.member.load(Ordering::Acquire))
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// Follows state changes.
    pub fn states(&self) -> watch::Receiver<SessionState> {
        self.inner.state.subscribe()
    }

    /// Until when this session is certainly alive on the registry, by this process's clock:
    /// the registry expires a session no sooner than its timeout after it last heard from it,
    /// and it heard from it no sooner than when the last answered request was sent. A tenth
    /// of the timeout is kept as a margin for clock rates and scheduling delays.
    ///
    /// While the session is suspended, whatever it holds (a leadership, a lock) must be
    /// treated as lost from this instant on: the registry may then give it to someone else.
    pub fn alive_until(&self) -> Instant {
        let heard = *self
            .inner
            .last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        heard + self.inner.timeout - self.inner.timeout / 10
    }

    /// The client this session belongs to.
    pub fn client(&self) -> &RegistryClient {
        &self.inner.client
    }

    fn call(&self) -> SessionCall {
        SessionCall {
            session: self.inner.id,
            request_id: self.inner.next_request.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Creates a node in this session (an ephemeral node lives as long as the session).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<Created, RegistryError> {
        let request = CreateRequest {
            path: path.to_owned(),
            data: data.to_vec(),
            ephemeral: mode.ephemeral,
            sequential: mode.sequential,
            session: Some(self.call()),
        };
        self.request(request, |stub, r| async move { stub.create(r).await })
            .await
    }

    /// Replaces a node's data in this session.
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
            session: Some(self.call()),
        };
        self.request(request, |stub, r| async move { stub.set(r).await })
            .await
    }

    /// Deletes a node in this session.
    pub async fn delete(&self, path: &str, version: Option<u32>) -> Result<Written, RegistryError> {
        let request = DeleteRequest {
            path: path.to_owned(),
            version,
            session: Some(self.call()),
        };
        self.request(request, |stub, r| async move { stub.delete(r).await })
            .await
    }

    /// Applies `ops` atomically in this session: creates may be ephemeral (they then live as
    /// long as the session), and a retry after an unknown outcome is applied only once.
    pub async fn multi(&self, ops: Vec<Op>) -> Result<MultiResponse, RegistryError> {
        let request = MultiRequest {
            ops,
            session: Some(self.call()),
        };
        self.request(request, |stub, r| async move { stub.multi(r).await })
            .await
    }

    /// Sends `request` within the session and records the zxid of the answer.
    async fn request<R, T, F, Fut>(&self, request: R, send: F) -> Result<T, RegistryError>
    where
        R: Clone,
        T: Reflects,
        F: Fn(RegistryConsumer, R) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let deadline = Instant::now() + self.inner.client.options().timeout;
        let answer = self
            .inner
            .send(deadline, |stub| send(stub, request.clone()))
            .await?;
        self.inner.client.observe(answer.zxid());
        Ok(answer)
    }

    /// Ends the session now; its ephemeral nodes are deleted. Takes `&self`, so that a session
    /// shared (in an `Arc`, by recipes or tasks) can be closed by any holder; requests made in it
    /// afterwards fail with [`RegistryError::SessionExpired`].
    pub async fn close(&self) -> Result<(), RegistryError> {
        let call = self.call();
        let request = SessionRequest {
            session: self.inner.id,
            request_id: call.request_id,
        };
        let deadline = Instant::now() + self.inner.client.options().timeout;
        let result = self
            .inner
            .send(
                deadline,
                |stub| async move { stub.close_session(request).await },
            )
            .await;
        self.inner.stop.cancel();
        match result {
            Ok(written) => {
                self.inner.client.observe(written.zxid);
                self.inner.state.send_replace(SessionState::Closed);
                Ok(())
            }
            Err(RegistryError::SessionExpired { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl Inner {
    fn set_state(&self, state: SessionState) {
        self.state.send_if_modified(|current| {
            // Expired and closed are final.
            if matches!(*current, SessionState::Expired | SessionState::Closed) || *current == state
            {
                return false;
            }
            *current = state;
            true
        });
    }

    /// The registry answered a request sent at `sent`.
    fn heard(&self, sent: Instant) {
        let mut last = self.last_heard.lock().unwrap_or_else(|p| p.into_inner());
        if sent > *last {
            *last = sent;
        }
    }

    /// Contact is back: a suspended session says so.
    fn contact(&self) {
        if *self.state.borrow() == SessionState::Suspended {
            self.set_state(SessionState::Reconnected);
        }
    }

    fn attachment(&self) -> Attachment {
        *self.attachment.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a request made by `send` through the failover loop, on the member holding the
    /// session, attaching it elsewhere when that member fails.
    async fn send<T, F, Fut>(&self, deadline: Instant, send: F) -> Result<T, RegistryError>
    where
        F: Fn(RegistryConsumer) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let plan = Plan {
            start: self.attachment().member,
            retry: Retry::InSession,
            deadline: Some(deadline),
        };
        let (answer, _) = failover::run(&self.client, plan, |member| {
            let request = send(self.client.stub(member));
            async move {
                let epoch = self.attach_at(member).await?;
                let sent = Instant::now();
                match request.await {
                    Ok(answer) => {
                        self.heard(sent);
                        self.contact();
                        Ok(answer)
                    }
                    Err(error) => {
                        self.failed(epoch, &error);
                        Err(error)
                    }
                }
            }
        })
        .await?;
        Ok(answer)
    }

    /// A request failed on attachment `epoch`: an expired session is final; any other failure
    /// suspends the session and makes the next request attach it again.
    fn failed(&self, epoch: u64, error: &RegistryError) {
        if matches!(error, RegistryError::SessionExpired { .. }) {
            self.set_state(SessionState::Expired);
            return;
        }
        self.set_state(SessionState::Suspended);
        let mut attachment = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        if attachment.epoch == epoch {
            attachment.valid = false;
        }
    }

    /// Makes sure the session is attached to `member` for this client; returns the attachment's
    /// epoch.
    async fn attach_at(&self, member: usize) -> Result<u64, RegistryError> {
        let current = self.attachment();
        if current.valid && current.member == member {
            return Ok(current.epoch);
        }
        let _attaching = self.attaching.lock().await;
        // Another request may have attached it here while this one waited.
        let current = self.attachment();
        if current.valid && current.member == member {
            return Ok(current.epoch);
        }
        let request = AttachSessionRequest {
            session: self.id,
            secret: self.secret,
        };
        match self.client.stub(member).attach_session(request).await {
            Ok(grant) => {
                self.client.observe(grant.zxid);
                let epoch = {
                    let mut attachment = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
                    *attachment = Attachment {
                        member,
                        epoch: attachment.epoch + 1,
                        valid: true,
                    };
                    attachment.epoch
                };
                self.member.store(member, Ordering::Release);
                tracing::info!(session = self.id, member = %self.client.addr(member), "session attached");
                self.contact();
                Ok(epoch)
            }
            Err(error) => {
                if matches!(error, RegistryError::SessionExpired { .. }) {
                    self.set_state(SessionState::Expired);
                }
                tracing::debug!(session = self.id, member = %self.client.addr(member), %error, "cannot attach the session here");
                Err(error)
            }
        }
    }
}

/// Sends a heartbeat every third of the timeout, through the same path as every other request:
/// a failed heartbeat moves the session, and keeps trying for as long as the session could still
/// be alive; only the registry can say that it expired.
async fn heartbeats(inner: Arc<Inner>) {
    let interval = (inner.timeout / 3).max(Duration::from_millis(50));
    let request = SessionRequest {
        session: inner.id,
        request_id: 0,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.stop.cancelled() => return,
        }
        let deadline = Instant::now() + inner.timeout;
        let beat = inner.send(
            deadline,
            |stub| async move { stub.keep_alive(request).await },
        );
        let outcome = tokio::select! {
            outcome = beat => outcome,
            _ = inner.stop.cancelled() => return,
        };
        match outcome {
            Ok(ack) => inner.client.observe(ack.zxid),
            Err(RegistryError::SessionExpired { .. }) => return,
            Err(error) => {
                tracing::debug!(session = inner.id, %error, "no member took the heartbeat yet");
            }
        }
    }
}
