//! How far a request goes before it gives up ([`FailoverPolicy`]), and how a program hears that
//! a request is being retried on other members ([`RetryNotice`], [`OnRetry`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::RegistryError;

/// What a request does when the member it tried cannot serve it (unreachable, no leader, no
/// quorum, shutting down, no answer in time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailoverPolicy {
    /// Try the other members in turn, round after round (pausing a little longer after each
    /// round, so that an election can finish), until one serves the request or
    /// [`ClientOptions::timeout`](super::ClientOptions::timeout) passes. What a long-lived
    /// process wants: a member restarting or an election only delays its requests.
    #[default]
    UntilDeadline,
    /// Try each member once, starting with the preferred one, then fail with an error that names
    /// every member and why it could not serve the request: for scripts and tools that would
    /// rather hear at once that the cluster is down or has no leader than wait for it. A request
    /// then takes at most one attempt per member, each bounded by
    /// [`ClientOptions::connect_timeout`](super::ClientOptions::connect_timeout) (a member that
    /// does not accept the connection) or
    /// [`ClientOptions::attempt_timeout`](super::ClientOptions::attempt_timeout) (one that
    /// accepts and does not answer). A watch under this policy ends with that error when its
    /// stream breaks and no member takes it over in one pass; a session's heartbeats fail faster
    /// and suspend the session sooner.
    OnePass,
}

/// A request failed on one member and is about to be tried on others (or again): what
/// [`OnRetry`] is told, once per request, at its first such failure.
///
/// Its `Display` is one line for people, e.g. `127.0.0.1:7001 unreachable (connection refused);
/// trying the other members for up to 10s`.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// The member that failed.
    pub member: SocketAddr,
    /// Why.
    pub error: RegistryError,
    /// How many members the client knows.
    pub members: usize,
    /// The policy the request follows.
    pub policy: FailoverPolicy,
    /// Time left before the request gives up; `None` for a request without a deadline (a watch
    /// stream being opened or resumed).
    pub remaining: Option<Duration>,
}

impl fmt::Display for RetryNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = describe(&self.error, &self.member.to_string());
        if is_unreachable(&self.error) {
            write!(f, "{} unreachable ({cause}); ", self.member)?;
        } else {
            write!(f, "{}: {cause}; ", self.member)?;
        }
        let others = if self.members > 1 {
            "trying the other members"
        } else {
            "retrying"
        };
        match (self.policy, self.remaining) {
            (FailoverPolicy::OnePass, _) => write!(f, "trying each other member once"),
            (FailoverPolicy::UntilDeadline, Some(left)) => {
                write!(f, "{others} for up to {}", seconds(left))
            }
            (FailoverPolicy::UntilDeadline, None) => write!(f, "{others} until one answers"),
        }
    }
}

/// `10s`, `2.5s`, `0.3s`: a time left, rounded to a tenth of a second (up, so that it is never
/// shown as 0s while time is left).
fn seconds(duration: Duration) -> String {
    let tenths = duration.as_millis().div_ceil(100);
    if tenths.is_multiple_of(10) {
        format!("{}s", tenths / 10)
    } else {
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

/// Called when a request starts retrying (see [`RetryNotice`]); set with
/// [`ClientOptions::on_retry`](super::ClientOptions::on_retry). It runs on the request's task,
/// so it must be quick: print a line, count, log.
///
/// ```
/// use rmif_registry::{ClientOptions, OnRetry};
///
/// let options = ClientOptions {
///     on_retry: Some(OnRetry::new(|notice| eprintln!("registry: {notice}"))),
///     ..ClientOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct OnRetry(Arc<dyn Fn(&RetryNotice) + Send + Sync>);

impl OnRetry {
    /// Calls `hook` with each notice.
    pub fn new(hook: impl Fn(&RetryNotice) + Send + Sync + 'static) -> Self {
        OnRetry(Arc::new(hook))
    }

    pub(crate) fn call(&self, notice: &RetryNotice) {
        (self.0)(notice)
    }
}

impl fmt::Debug for OnRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRetry(..)")
    }
}

/// A failure to reach a member at all (refused, unreachable), as opposed to its answer or a
/// request lost on the way.
pub(crate) fn is_unreachable(error: &RegistryError) -> bool {
    matches!(
        error,
        RegistryError::Rpc(
            rmif_core::Error::Unavailable { .. } | rmif_core::Error::NoProvider { .. }
        )
    )
}

/// Why the member at `addr` could not serve a request, in a few words and without its address:
/// `connection refused`, `no answer within 3000 ms`, `no quorum: no leader`, `shutting down`.
pub(crate) fn describe(error: &RegistryError, addr: &str) -> String {
    use rmif_core::Error as Rpc;
    match error {
        RegistryError::Rpc(Rpc::Timeout { timeout_ms, .. }) => {
            format!("no answer within {timeout_ms} ms")
        }
        RegistryError::Rpc(Rpc::Unavailable { reason, .. }) => plain(reason),
        RegistryError::Rpc(Rpc::ShuttingDown { .. }) => "shutting down".to_owned(),
        RegistryError::Rpc(Rpc::Overloaded { .. }) => "overloaded".to_owned(),
        RegistryError::Rpc(Rpc::ConnectionLost { reason, .. }) => {
            format!("connection lost: {reason}")
        }
        error => {
            // rmif-core's connection errors name the address followed by the cause.
            let text = error.to_string();
            let marker = format!("{addr}: ");
            match text.find(&marker) {
                // The cause, less the parenthesis that closes rmif-core's list around it.
                Some(at) => {
                    let rest = &text[at + marker.len()..];
                    rest.strip_suffix(')').unwrap_or(rest).to_owned()
                }
                None => text,
            }
        }
    }
}

/// A connection failure's reason as people say it: `connect failed: Connection refused (os
/// error 111)` is `connection refused`; other reasons are kept as they are.
fn plain(reason: &str) -> String {
    let Some(io) = reason.strip_prefix("connect failed: ") else {
        return reason.to_owned();
    };
    let io = match io.rfind(" (os error ") {
        Some(at) if io.ends_with(')') => &io[..at],
        _ => io,
    };
    let mut chars = io.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(error: RegistryError, members: usize, remaining: Option<Duration>) -> RetryNotice {
        RetryNotice {
            member: "127.0.0.1:2181".parse().unwrap(),
            error,
            members,
            policy: FailoverPolicy::UntilDeadline,
            remaining,
        }
    }

    fn refused() -> RegistryError {
        RegistryError::Rpc(rmif_core::Error::NoProvider {
            service: "rmif.Registry".into(),
            detail: " (127.0.0.1:2181: connection refused)".into(),
        })
    }

    #[test]
    fn a_notice_names_the_member_its_cause_and_how_long_the_retries_may_last() {
        let line = notice(refused(), 3, Some(Duration::from_millis(9_990))).to_string();
        assert_eq!(
            line,
            "127.0.0.1:2181 unreachable (connection refused); trying the other members for up to 10s"
        );
        let line = notice(
            RegistryError::NoQuorum("no leader".into()),
            1,
            Some(Duration::from_millis(2_450)),
        )
        .to_string();
        assert_eq!(
            line,
            "127.0.0.1:2181: no quorum: no leader; retrying for up to 2.5s"
        );
        let line = notice(refused(), 2, None).to_string();
        assert!(
            line.ends_with("trying the other members until one answers"),
            "{line}"
        );
        let mut one_pass = notice(refused(), 2, Some(Duration::from_secs(1)));
        one_pass.policy = FailoverPolicy::OnePass;
        assert!(
            one_pass
                .to_string()
                .ends_with("trying each other member once")
        );
    }

    #[test]
    fn causes_are_told_in_a_few_words() {
        let addr = "127.0.0.1:2181";
        let timeout = RegistryError::Rpc(rmif_core::Error::Timeout {
            service: "rmif.Registry".into(),
            method: "get".into(),
            timeout_ms: 3000,
        });
        assert_eq!(describe(&timeout, addr), "no answer within 3000 ms");
        assert_eq!(describe(&refused(), addr), "connection refused");
        let unavailable = |reason: &str| {
            RegistryError::Rpc(rmif_core::Error::Unavailable {
                endpoint: addr.into(),
                reason: reason.into(),
            })
        };
        assert_eq!(
            describe(
                &unavailable("connect failed: Connection refused (os error 111)"),
                addr
            ),
            "connection refused"
        );
        assert_eq!(
            describe(&unavailable("connect timed out after 1000 ms"), addr),
            "connect timed out after 1000 ms"
        );
        let stopping = RegistryError::Rpc(rmif_core::Error::ShuttingDown {
            endpoint: addr.into(),
        });
        assert_eq!(describe(&stopping, addr), "shutting down");
        assert_eq!(
            describe(&RegistryError::NoQuorum("no leader".into()), addr),
            "no quorum: no leader"
        );
    }

    #[test]
    fn time_left_is_rounded_up_to_a_tenth() {
        assert_eq!(seconds(Duration::from_secs(10)), "10s");
        assert_eq!(seconds(Duration::from_millis(1)), "0.1s");
        assert_eq!(seconds(Duration::from_millis(1_250)), "1.3s");
    }
}
