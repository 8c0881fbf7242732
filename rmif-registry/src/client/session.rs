//! A client session: heartbeats in the background, a state the application can follow, and
//! operations that survive a failover by moving the session (with its secret) to another member
//! and retrying under the same request number, which the registry applies only once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CreateMode, RegistryClient};
use crate::api::{
    AttachSessionRequest, CreateRequest, Created, DeleteRequest, OpenSessionRequest, Reflects,
    Registry, RegistryConsumer, SessionGrant, SessionRequest, SetRequest, Written,
};
use crate::error::RegistryError;
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

struct Inner {
    client: RegistryClient,
    id: u64,
    secret: u64,
    timeout: Duration,
    member: AtomicUsize,
    next_request: AtomicU64,
    state: watch::Sender<SessionState>,
    moving: Mutex<()>,
    stop: CancellationToken,
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
        let members = client.member_count().max(1);
        let deadline = Instant::now() + client.options().timeout;
        let start = client.preferred();
        let mut attempt = 0;
        let (grant, member) = loop {
            let member = (start + attempt) % members;
            match client.stub(member).open_session(request).await {
                Ok(grant) => break (grant, member),
                // Opening is a write outside any session: retry only what certainly did not
                // open one (an orphan session would simply expire).
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    attempt += 1;
                    if attempt % members == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(error) => return Err(error),
            }
        };
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
            member: AtomicUsize::new(member),
            next_request: AtomicU64::new(1),
            state: watch::Sender::new(SessionState::Connected),
            moving: Mutex::new(()),
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

    /// Sends `request` to the member holding the session (moving it when needed) and records
    /// the zxid of the answer.
    async fn request<R, T, F, Fut>(&self, request: R, send: F) -> Result<T, RegistryError>
    where
        R: Clone,
        T: Reflects,
        F: Fn(RegistryConsumer, R) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let answer = self
            .inner
            .retrying(|stub| send(stub, request.clone()))
            .await?;
        self.inner.client.observe(answer.zxid());
        Ok(answer)
    }

    /// Ends the session now; its ephemeral nodes are deleted.
    pub async fn close(self) -> Result<(), RegistryError> {
        let call = self.call();
        let request = SessionRequest {
            session: self.inner.id,
            request_id: call.request_id,
        };
        let result = self
            .inner
            .retrying(|stub| async move { stub.close_session(request).await })
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

    /// Runs `call` on the member holding the session; on a connection failure, a lost leader or
    /// a "moved" refusal, moves the session to a member that answers and calls again with the
    /// same request number.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, RegistryError>
    where
        F: FnMut(RegistryConsumer) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let deadline = Instant::now() + self.client.options().timeout;
        loop {
            let member = self.member.load(Ordering::Acquire);
            match call(self.client.stub(member)).await {
                Ok(value) => return Ok(value),
                Err(error @ RegistryError::SessionExpired { .. }) => {
                    self.set_state(SessionState::Expired);
                    return Err(error);
                }
                Err(error)
                    if (error.is_retryable()
                        || matches!(error, RegistryError::SessionRejected { .. }))
                        && Instant::now() < deadline =>
                {
                    self.set_state(SessionState::Suspended);
                    self.move_from(member, deadline).await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Attaches the session to a member that answers, starting with `member` itself (its
    /// connection may simply have been replaced) and then the others.
    async fn move_from(&self, member: usize, deadline: Instant) -> Result<(), RegistryError> {
        let _moving = self.moving.lock().await;
        if self.member.load(Ordering::Acquire) != member {
            return Ok(()); // another task already moved it
        }
        let members = self.client.member_count().max(1);
        let request = AttachSessionRequest {
            session: self.id,
            secret: self.secret,
        };
        let mut attempt = 0;
        loop {
            let candidate = (member + attempt) % members;
            match self.client.stub(candidate).attach_session(request).await {
                Ok(grant) => {
                    self.client.observe(grant.zxid);
                    self.member.store(candidate, Ordering::Release);
                    tracing::info!(session = self.id, member = %self.client.addr(candidate), "session attached");
                    self.set_state(SessionState::Reconnected);
                    return Ok(());
                }
                Err(error @ RegistryError::SessionExpired { .. }) => {
                    self.set_state(SessionState::Expired);
                    return Err(error);
                }
                Err(error) if Instant::now() >= deadline || self.stop.is_cancelled() => {
                    return Err(error);
                }
                Err(error) => {
                    tracing::debug!(session = self.id, member = %self.client.addr(candidate), %error, "cannot attach session here");
                    attempt += 1;
                    if attempt % members == 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}

/// Sends a heartbeat every third of the timeout; moves the session when one fails.
async fn heartbeats(inner: Arc<Inner>) {
    let interval = (inner.timeout / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.stop.cancelled() => return,
        }
        let member = inner.member.load(Ordering::Acquire);
        let request = SessionRequest {
            session: inner.id,
            request_id: 0,
        };
        match inner.client.stub(member).keep_alive(request).await {
            Ok(ack) => {
                inner.client.observe(ack.zxid);
                if *inner.state.borrow() == SessionState::Suspended {
                    inner.set_state(SessionState::Reconnected);
                }
            }
            Err(RegistryError::SessionExpired { .. }) => {
                inner.set_state(SessionState::Expired);
                return;
            }
            Err(error) => {
                tracing::debug!(session = inner.id, %error, "heartbeat failed; moving the session");
                inner.set_state(SessionState::Suspended);
                // Keep trying until the registry answers one way or the other; only it can say
                // the session expired.
                let patience = Instant::now() + inner.timeout;
                match inner.move_from(member, patience).await {
                    Ok(()) => {}
                    Err(RegistryError::SessionExpired { .. }) => return,
                    Err(_) => {}
                }
            }
        }
        if inner.stop.is_cancelled() {
            return;
        }
    }
}
