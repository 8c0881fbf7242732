//! Whether each peer member is reachable, as the operator reads it in the log: one WARN line
//! when a peer's connection is lost, cannot be made, or the peer stops answering, and one INFO
//! line when it is back. Retries in between log nothing (at debug level at most), so a member
//! down for an hour costs two lines, not one per reconnection attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What the last report about a peer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing known yet (the member just started).
    Unknown,
    Reachable,
    Unreachable,
}

/// The reachability of one peer, as this member's connection to it sees it.
#[derive(Debug)]
struct Reachability {
    member: u64,
    addr: SocketAddr,
    state: State,
    /// When it became unreachable, to say for how long when it is back.
    since: Option<Instant>,
}

impl Reachability {
    /// Nothing known yet of `member` at `addr`.
    pub fn new(member: u64, addr: SocketAddr) -> Self {
        Reachability {
            member,
            addr,
            state: State::Unknown,
            since: None,
        }
    }

    /// The peer answers (a connection is up, or it spoke after a silence). Logs (INFO) and
    /// returns true if that is news.
    pub fn reachable(&mut self) -> bool {
        if self.state == State::Reachable {
            return false;
        }
        let unreachable_ms = self.since.take().map(|t| t.elapsed().as_millis() as u64);
        self.state = State::Reachable;
        match unreachable_ms {
            Some(unreachable_ms) => tracing::info!(
                member = self.member,
                addr = %self.addr,
                unreachable_ms,
                "member reachable"
            ),
            None => tracing::info!(member = self.member, addr = %self.addr, "member reachable"),
        }
        true
    }

    /// The peer cannot be reached, for `cause`. Logs (WARN) and returns true if that is news;
    /// a repeated failure logs only at debug level.
    pub fn unreachable(&mut self, cause: &dyn std::fmt::Display) -> bool {
        if self.state == State::Unreachable {
            tracing::debug!(member = self.member, addr = %self.addr, %cause, "member still unreachable");
            return false;
        }
        self.state = State::Unreachable;
        self.since = Some(Instant::now());
        tracing::warn!(member = self.member, addr = %self.addr, %cause, "member unreachable");
        true
    }

    /// Whether the last report said reachable.
    #[cfg(test)]
    fn is_reachable(&self) -> bool {
        self.state == State::Reachable
    }
}

/// When this member last heard from each peer, shared between the tasks that read the peers'
/// connections (which record it) and those that write to them (which judge silence).
#[derive(Debug, Clone)]
pub struct Heard {
    origin: Instant,
    /// Microseconds after `origin`, plus one, of the last frame from each peer (0: none yet).
    last: Arc<Vec<(u64, AtomicU64)>>,
}

impl Heard {
    /// Nothing heard yet from any of `members`.
    pub fn new(members: impl IntoIterator<Item = u64>) -> Self {
        Heard {
            origin: Instant::now(),
            last: Arc::new(
                members
                    .into_iter()
                    .map(|m| (m, AtomicU64::new(0)))
                    .collect(),
            ),
        }
    }

    /// A frame arrived from `member` now.
    pub fn record(&self, member: u64) {
        let now = self.origin.elapsed().as_micros() as u64 + 1;
        if let Some((_, last)) = self.last.iter().find(|(m, _)| *m == member) {
            last.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// When `member` was last heard from (`None`: never).
    pub fn last(&self, member: u64) -> Option<Instant> {
        let (_, last) = self.last.iter().find(|(m, _)| *m == member)?;
        match last.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(self.origin + Duration::from_micros(micros - 1)),
        }
    }
}

/// Whether a peer stopped answering: something was sent to it, and nothing came back from it
/// for `silence` after that. Members that have nothing to say to each other (two followers)
/// send nothing, so they are never judged.
#[derive(Debug)]
struct Silence {
    silence: Duration,
    /// The first send not yet followed by anything heard from the peer.
    unanswered_since: Option<Instant>,
}

impl Silence {
    /// A peer is silent once it has not answered for `silence`.
    pub fn new(silence: Duration) -> Self {
        Silence {
            silence,
            unanswered_since: None,
        }
    }

    /// Something was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.unanswered_since.get_or_insert(now);
    }

    /// Given when the peer was last heard from: `Some(how long)` if it has not answered for
    /// longer than the bound, `None` if it answered (or was not asked).
    pub fn check(&mut self, heard: Option<Instant>, now: Instant) -> Option<Duration> {
        let since = self.unanswered_since?;
        if heard.is_some_and(|heard| heard >= since) {
            self.unanswered_since = None;
            return None;
        }
        let waited = now.duration_since(since);
        (waited > self.silence).then_some(waited)
    }

    /// A new connection: earlier sends are forgotten.
    pub fn reset(&mut self) {
        self.unanswered_since = None;
    }
}

/// What one outbox knows of its peer: whether it is reachable, and whether it answers what
/// this member sends it on the current connection.
#[derive(Debug)]
pub struct PeerWatch {
    member: u64,
    reachability: Reachability,
    heard: Heard,
    unanswered: Silence,
    /// Since when the peer has been silent on this connection, if it is.
    silent_since: Option<Instant>,
}

impl PeerWatch {
    /// Watches `member` at `addr`: silent once it has not answered for `silence`.
    pub fn new(member: u64, addr: SocketAddr, heard: Heard, silence: Duration) -> Self {
        PeerWatch {
            member,
            reachability: Reachability::new(member, addr),
            heard,
            unanswered: Silence::new(silence),
            silent_since: None,
        }
    }

    /// A connection to the peer is up.
    pub fn connected(&mut self) {
        self.unanswered.reset();
        self.silent_since = None;
        self.reachability.reachable();
    }

    /// The connection could not be made or broke, for `cause`.
    pub fn failed(&mut self, cause: &dyn std::fmt::Display) {
        self.silent_since = None;
        self.reachability.unreachable(cause);
    }

    /// Something was written to the peer at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.unanswered.sent(now);
    }

    /// Looks at what was heard from the peer: it went silent, or spoke again after a silence.
    pub fn judge(&mut self, now: Instant) {
        let last = self.heard.last(self.member);
        match self.silent_since {
            Some(since) if last.is_some_and(|heard| heard >= since) => {
                self.silent_since = None;
                self.unanswered.reset();
                self.reachability.reachable();
            }
            Some(_) => {}
            None => {
                if let Some(waited) = self.unanswered.check(last, now) {
                    self.silent_since = Some(now);
                    self.reachability.unreachable(&format!(
                        "not answering: nothing heard for {} ms",
                        waited.as_millis()
                    ));
                }
            }
        }
    }

    /// Whether the peer is, as last judged, reachable.
    #[cfg(test)]
    fn is_reachable(&self) -> bool {
        self.reachability.is_reachable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transitions_are_news() {
        let mut peer = Reachability::new(2, "127.0.0.1:1".parse().unwrap());
        assert!(peer.unreachable(&"connection refused"), "first failure");
        assert!(!peer.unreachable(&"connection refused"), "a retry");
        assert!(!peer.unreachable(&"timed out"), "another retry");
        assert!(peer.reachable());
        assert!(!peer.reachable());
        assert!(peer.is_reachable());
        assert!(peer.unreachable(&"broken pipe"));
        assert!(!peer.is_reachable());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_unreachable_until_it_speaks_again() {
        let heard = Heard::new([2]);
        let mut peer = PeerWatch::new(
            2,
            "127.0.0.1:1".parse().unwrap(),
            heard.clone(),
            Duration::from_secs(1),
        );
        peer.connected();
        peer.sent(Instant::now());
        tokio::time::advance(Duration::from_millis(1500)).await;
        peer.judge(Instant::now());
        assert!(!peer.is_reachable(), "silent for longer than the bound");
        tokio::time::advance(Duration::from_millis(100)).await;
        peer.judge(Instant::now());
        assert!(!peer.is_reachable());
        heard.record(2);
        peer.judge(Instant::now());
        assert!(peer.is_reachable(), "spoke again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_is_silent_once_a_send_went_unanswered_for_the_bound() {
        let heard = Heard::new([2, 3]);
        let mut silence = Silence::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(silence.check(None, start + Duration::from_secs(5)), None);

        silence.sent(start);
        tokio::time::advance(Duration::from_millis(100)).await;
        heard.record(2);
        assert_eq!(
            silence.check(heard.last(2), Instant::now()),
            None,
            "answered"
        );
        assert_eq!(heard.last(3), None);

        let asked = Instant::now() + Duration::from_millis(10);
        silence.sent(asked);
        silence.sent(asked + Duration::from_millis(500));
        let later = asked + Duration::from_millis(900);
        assert_eq!(
            silence.check(heard.last(2), later),
            None,
            "within the bound"
        );
        let late = asked + Duration::from_millis(1500);
        assert_eq!(
            silence.check(heard.last(2), late),
            Some(Duration::from_millis(1500)),
            "timed from the first unanswered send"
        );
        silence.reset();
        assert_eq!(silence.check(heard.last(2), late), None);
    }
}
