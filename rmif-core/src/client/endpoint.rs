//! One provider address as the consumer sees it: its connection, kept up by a supervisor task
//! that reconnects with backoff and jitter, and the load figures balancers read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::ClientConnection;
use super::outlier::OutlierState;
use crate::Error;
use crate::balance::{PeakEwma, identity_of};
use crate::transport::Liveness;

/// First wait before reconnecting after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the latency estimate remembers a slow call (its time constant).
const LATENCY_MEMORY: Duration = Duration::from_secs(10);

/// How connections to providers are made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectSettings {
    pub(crate) liveness: Liveness,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_frame_size: usize,
}

#[derive(Clone)]
enum State {
    /// The first connection attempt is under way; calls wait for it.
    Connecting,
    /// Calls go here.
    Connected(Arc<ClientConnection>),
    /// Unreachable; calls fail fast while the supervisor retries in the background.
    Down(String),
}

struct Status {
    state: watch::Sender<State>,
    available: AtomicBool,
}

impl Status {
    fn set(&self, state: State) {
        self.available
            .store(!matches!(state, State::Down(_)), Ordering::Release);
        self.state.send_replace(state);
    }
}

/// A provider address with its supervised connection. Dropping the last handle stops the
/// supervisor and closes the connection.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    identity: u64,
    status: Arc<Status>,
    in_flight: AtomicU32,
    latency: PeakEwma,
    outlier: OutlierState,
    stop: CancellationToken,
}

impl Endpoint {
    /// Starts connecting to `addr` in the background.
    pub(crate) fn spawn(addr: SocketAddr, settings: ConnectSettings) -> Arc<Self> {
        let status = Arc::new(Status {
            state: watch::Sender::new(State::Connecting),
            available: AtomicBool::new(true),
        });
        let stop = CancellationToken::new();
        tokio::spawn(supervise(addr, settings, status.clone(), stop.clone()));
        Arc::new(Endpoint {
            addr,
            identity: identity_of(&addr),
            status,
            in_flight: AtomicU32::new(0),
            latency: PeakEwma::new(LATENCY_MEMORY),
            outlier: OutlierState::default(),
            stop,
        })
    }

    /// The provider's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stable identity for consistent hashing.
    pub(crate) fn identity(&self) -> u64 {
        self.identity
    }

    /// False while the provider is known to be unreachable.
    pub(crate) fn is_available(&self) -> bool {
        self.status.available.load(Ordering::Acquire)
    }

    /// Its record of failed calls and ejection.
    pub(crate) fn outlier(&self) -> &OutlierState {
        &self.outlier
    }

    /// True while a usable connection is up.
    pub(crate) fn is_connected(&self) -> bool {
        matches!(&*self.status.state.borrow(), State::Connected(c) if c.is_usable())
    }

    /// Resolves when the connection's state changes (connected, down, reconnecting).
    pub(crate) fn state_changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut state = self.status.state.subscribe();
        async move {
            let _ = state.changed().await;
        }
    }

    /// The connection's state in words, for errors: "connected", "connecting", or why it is
    /// down.
    pub(crate) fn describe_state(&self) -> String {
        match &*self.status.state.borrow() {
            State::Connected(connection) if connection.is_usable() => "connected".to_owned(),
            State::Connected(connection) => connection.close_reason(),
            State::Connecting => "still connecting".to_owned(),
            State::Down(reason) => reason.clone(),
        }
    }

    /// Calls in flight from this consumer.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The latency estimate in nanoseconds (0 before the first sample).
    pub(crate) fn latency_ns(&self) -> u64 {
        self.latency.nanos(std::time::Instant::now())
    }

    /// Counts a call in flight until the returned guard drops.
    pub(crate) fn begin_call(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Folds into the estimate a call whose request left at `sent_at` and that was answered
    /// now.
    pub(crate) fn observe_latency(&self, sent_at: tokio::time::Instant) {
        let now = tokio::time::Instant::now();
        self.latency
            .observe(now.duration_since(sent_at), now.into_std());
    }

    /// The current connection: waits (until `deadline`) while the first attempt is under way,
    /// fails at once while the provider is down.
    pub(crate) async fn connection(
        &self,
        deadline: Instant,
    ) -> Result<Arc<ClientConnection>, Error> {
        if let State::Connected(connection) = &*self.status.state.borrow()
            && connection.is_usable()
        {
            return Ok(connection.clone());
        }
        let mut state = self.status.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Connected(connection) if connection.is_usable() => {
                    return Ok(connection.clone());
                }
                State::Connected(connection) => return Err(connection.not_sent()),
                State::Down(reason) => {
                    return Err(Error::Unavailable {
                        endpoint: self.addr.to_string(),
                        reason: reason.clone(),
                    });
                }
                State::Connecting => {}
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(Error::Unavailable {
                        endpoint: self.addr.to_string(),
                        reason: "still connecting when the call's deadline passed".to_owned(),
                    });
                }
            }
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Decrements the in-flight count of an endpoint when dropped.
pub(crate) struct InFlight<'a>(&'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn supervise(
    addr: SocketAddr,
    settings: ConnectSettings,
    status: Arc<Status>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let attempt = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr));
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = stop.cancelled() => return,
        };
        let failure = match outcome {
            Ok(Ok(stream)) => {
                match ClientConnection::start(stream, settings.liveness, settings.max_frame_size) {
                    Ok(connection) => {
                        tracing::debug!(%addr, "connected to provider");
                        status.set(State::Connected(connection.clone()));
                        backoff = BACKOFF_MIN;
                        tokio::select! {
                            _ = connection.unusable() => {}
                            _ = stop.cancelled() => {
                                connection.close("the consumer no longer uses this provider");
                                return;
                            }
                        }
                        // Reconnect at once after a loss; back off only if that fails too.
                        let reason = connection.close_reason();
                        tracing::info!(%addr, %reason, "connection to provider ended");
                        status.set(State::Down(reason));
                        continue;
                    }
                    Err(error) => format!("cannot set up the connection: {error}"),
                }
            }
            Ok(Err(error)) => format!("connect failed: {error}"),
            Err(_) => format!(
                "connect timed out after {} ms",
                settings.connect_timeout.as_millis()
            ),
        };
        tracing::debug!(%addr, reason = %failure, "provider unreachable; retrying");
        status.set(State::Down(failure));
        // Full jitter over the upper half, so that many consumers do not reconnect in lockstep.
        let wait = backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
