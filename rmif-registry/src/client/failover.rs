//! The one loop that moves a registry request between members.
//!
//! Every request a client makes (a read, a write, opening or moving a session, a heartbeat,
//! opening a watch stream) goes through [`run`]: it tries one member, and when the failure says
//! another attempt may succeed, the next member, pausing after each full round so that an
//! election can finish. What may be retried is the caller's [`Retry`]; what one attempt does
//! (attaching a session first, for instance) is the caller's closure. rmif-core's own retries are
//! off for registry members: each member is a client of its own, and only this loop knows that a
//! session must be attached before it is used on another member.

use std::time::Duration;

use tokio::time::Instant;

use super::RegistryClient;
use crate::error::RegistryError;

/// Pause after the first full round of failed attempts; it grows by this much per round.
const ROUND_PAUSE: Duration = Duration::from_millis(50);
/// Rounds after which the pause stops growing.
const MAX_PAUSE_ROUNDS: u32 = 8;

/// Which failures allow another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Any failure after which the request may succeed elsewhere: reads, syncs, opening a
    /// session or a watch.
    Retryable,
    /// Writes outside a session: only failures that prove the write was not performed, since a
    /// second attempt could apply it twice.
    IfNotPerformed,
    /// Requests within a session: retryable failures, and the refusal of a member that no
    /// longer holds the session (it moved; the next attempt attaches it again). The registry
    /// applies a retried session request once.
    InSession,
}

impl Retry {
    fn allows(self, error: &RegistryError) -> bool {
        match self {
            Retry::Retryable => error.is_retryable(),
            Retry::IfNotPerformed => error.was_not_performed(),
            Retry::InSession => {
                error.is_retryable() || matches!(error, RegistryError::SessionRejected { .. })
            }
        }
    }
}

/// Where a request starts, what may be retried, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// The member tried first (an index into the client's members).
    pub(crate) start: usize,
    /// Which failures allow another attempt.
    pub(crate) retry: Retry,
    /// When to give up; `None`: never (the caller cancels by dropping the future).
    pub(crate) deadline: Option<Instant>,
}

/// Runs `attempt(member)` on `plan.start`, then on the following members in turn, until one
/// succeeds, a failure that `plan.retry` does not allow, or the deadline. Returns the answer and
/// the member that gave it.
///
/// When it gives up after failures that all allowed another attempt, it reports the last answer
/// a member gave (say, "no quorum") rather than the connection failures of members that are
/// down, which say less; when no member could be reached at all, it names each with its cause.
pub(crate) async fn run<T, F, Fut>(
    client: &RegistryClient,
    plan: Plan,
    mut attempt: F,
) -> Result<(T, usize), RegistryError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let members = client.member_count();
    if members == 0 {
        return Err(RegistryError::NoServers);
    }
    let mut tried = 0usize;
    let mut answered: Option<RegistryError> = None;
    // Why each member could not be reached, if it could not (its last failure).
    let mut unreachable: Vec<Option<String>> = vec![None; members];
    loop {
        let member = (plan.start + tried) % members;
        let error = match attempt(member).await {
            Ok(value) => return Ok((value, member)),
            Err(error) => error,
        };
        if is_unreachable(&error) {
            unreachable[member] = Some(cause(&error, &client.addr(member).to_string()));
        }
        let out_of_time = plan.deadline.is_some_and(|d| Instant::now() >= d);
        if !plan.retry.allows(&error) || out_of_time {
            return Err(match (error, answered) {
                // Every failure allowed another attempt, so an earlier one is as true.
                (error @ RegistryError::Rpc(_), Some(answer)) if plan.retry.allows(&error) => {
                    answer
                }
                (error, _) if is_unreachable(&error) => none_reached(client, &unreachable, error),
                (error, _) => error,
            });
        }
        tracing::debug!(member = %client.addr(member), %error, "registry request failed; trying another member");
        if !matches!(error, RegistryError::Rpc(_)) {
            answered = Some(error);
        }
        tried += 1;
        if tried.is_multiple_of(members) {
            let rounds = (tried / members).min(MAX_PAUSE_ROUNDS as usize) as u32;
            let mut pause = ROUND_PAUSE * rounds;
            if let Some(deadline) = plan.deadline {
                pause = pause.min(deadline.saturating_duration_since(Instant::now()));
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// A failure to reach a member at all (refused, unreachable), as opposed to its answer or a
/// request lost on the way.
fn is_unreachable(error: &RegistryError) -> bool {
    matches!(
        error,
        RegistryError::Rpc(
            rmif_core::Error::Unavailable { .. } | rmif_core::Error::NoProvider { .. }
        )
    )
}

/// Why the member at `addr` could not be reached, without the wording around it: rmif-core's
/// error names the address followed by the cause.
fn cause(error: &RegistryError, addr: &str) -> String {
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

/// The error for a request that reached no member: every member tried, with its cause; `last`
/// itself if only one member was tried.
fn none_reached(
    client: &RegistryClient,
    unreachable: &[Option<String>],
    last: RegistryError,
) -> RegistryError {
    let causes: Vec<String> = unreachable
        .iter()
        .enumerate()
        .filter_map(|(member, cause)| Some(format!("{}: {}", client.addr(member), cause.as_ref()?)))
        .collect();
    if causes.len() < 2 {
        return last;
    }
    RegistryError::Rpc(rmif_core::Error::NoProvider {
        service: "rmif.Registry".to_owned(),
        detail: format!(
            ": none of the {} members tried could be reached ({})",
            causes.len(),
            causes.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::client::ClientOptions;

    fn client(members: usize) -> RegistryClient {
        // Port 1 on loopback refuses at once; nothing here connects anyway.
        let servers: Vec<std::net::SocketAddr> = (0..members)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1 + i as u8], 1)))
            .collect();
        RegistryClient::new(&servers, ClientOptions::default())
    }

    fn lost() -> RegistryError {
        RegistryError::Rpc(rmif_core::Error::ConnectionLost {
            endpoint: "m".into(),
            reason: "test".into(),
        })
    }

    fn refused() -> RegistryError {
        RegistryError::Rpc(rmif_core::Error::Unavailable {
            endpoint: "m".into(),
            reason: "test".into(),
        })
    }

    fn plan(start: usize, retry: Retry, deadline: Option<Duration>) -> Plan {
        Plan {
            start,
            retry,
            deadline: deadline.map(|d| Instant::now() + d),
        }
    }

    /// Runs the loop with answers scripted per attempt; returns the outcome and the members
    /// tried, in order.
    async fn script(
        client: &RegistryClient,
        plan: Plan,
        answers: Vec<Result<u32, RegistryError>>,
    ) -> (Result<(u32, usize), RegistryError>, Vec<usize>) {
        let tried = Mutex::new(Vec::new());
        let answers = Mutex::new(answers.into_iter());
        let outcome = run(client, plan, |member| {
            tried.lock().unwrap().push(member);
            let answer = answers
                .lock()
                .unwrap()
                .next()
                .unwrap_or_else(|| Err(lost()));
            async move { answer }
        })
        .await;
        (outcome, tried.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_reaches_no_member_names_each_with_its_cause() {
        let client = client(2);
        let answers = std::iter::repeat_with(|| Err(refused()))
            .take(1000)
            .collect();
        let (outcome, _) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_millis(300))),
            answers,
        )
        .await;
        let error = outcome.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("none of the 2 members tried could be reached"),
            "{text}"
        );
        assert!(
            text.contains("127.0.0.1:1: ") && text.contains("127.0.0.2:1: "),
            "{text}"
        );
        assert_eq!(error.kind(), crate::ErrorKind::Unreachable);
    }

    #[tokio::test(start_paused = true)]
    async fn moves_to_the_next_member_until_one_answers() {
        let client = client(3);
        let (outcome, tried) = script(
            &client,
            plan(1, Retry::Retryable, Some(Duration::from_secs(5))),
            vec![Err(lost()), Err(RegistryError::NoQuorum("x".into())), Ok(7)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (7, 0));
        assert_eq!(tried, [1, 2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_forbids_retrying_ends_the_request_at_once() {
        let client = client(3);
        let exists = RegistryError::NodeExists { path: "/a".into() };
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(5))),
            vec![Err(exists.clone()), Ok(1)],
        )
        .await;
        assert_eq!(outcome.unwrap_err(), exists);
        assert_eq!(tried, [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_outside_a_session_is_retried_only_if_it_was_not_performed() {
        let client = client(3);
        // Refused before sending: certainly not performed.
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::IfNotPerformed, Some(Duration::from_secs(5))),
            vec![Err(refused()), Ok(3)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (3, 1));
        assert_eq!(tried, [0, 1]);
        // Lost after sending: it may have been applied, so it is not sent again.
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::IfNotPerformed, Some(Duration::from_secs(5))),
            vec![Err(lost()), Ok(3)],
        )
        .await;
        assert_eq!(outcome.unwrap_err(), lost());
        assert_eq!(tried, [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_request_is_retried_after_the_session_moved() {
        let client = client(2);
        let moved = RegistryError::SessionRejected {
            session: 1,
            reason: "moved".into(),
        };
        let (outcome, _) = script(
            &client,
            plan(0, Retry::InSession, Some(Duration::from_secs(5))),
            vec![Err(moved.clone()), Ok(1)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (1, 1));
        // Outside a session the same refusal is final.
        let (outcome, _) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(5))),
            vec![Err(moved.clone()), Ok(1)],
        )
        .await;
        assert_eq!(outcome.unwrap_err(), moved);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_a_members_answer_is_reported_over_transport_failures() {
        let client = client(3);
        let no_quorum = RegistryError::NoQuorum("no leader".into());
        let started = Instant::now();
        let answers = std::iter::once(Err(no_quorum.clone()))
            .chain(std::iter::repeat_with(|| Err(lost())).take(1000))
            .collect();
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(2))),
            answers,
        )
        .await;
        assert_eq!(outcome.unwrap_err(), no_quorum);
        assert!(started.elapsed() >= Duration::from_secs(2));
        // Rounds are paused 50, 100, 150, … ms apart: a few dozen attempts, not a busy loop.
        assert!((6..100).contains(&tried.len()), "{} attempts", tried.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_round_of_failures_pauses_before_the_next() {
        let client = client(2);
        let started = Instant::now();
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::Retryable, None),
            vec![Err(lost()), Err(lost()), Err(lost()), Err(lost()), Ok(9)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (9, 0));
        assert_eq!(tried, [0, 1, 0, 1, 0]);
        // Two full rounds: 50 ms, then 100 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_client_without_members_says_so() {
        let client = client(0);
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(1))),
            vec![Ok(1)],
        )
        .await;
        assert_eq!(outcome.unwrap_err(), RegistryError::NoServers);
        assert!(tried.is_empty());
    }
}
