//! The one loop that moves a registry request between members.
//!
//! Every request a client makes (a read, a write, opening or moving a session, a heartbeat,
//! opening a watch stream) goes through [`run`]: it tries one member, and when the failure says
//! another attempt may succeed, the next member, pausing after each full round so that an
//! election can finish, until the deadline, or after one pass over the members under
//! [`FailoverPolicy::OnePass`]. What may be retried is the caller's [`Retry`]; what one attempt does
//! (attaching a session first, for instance) is the caller's closure. rmif-core's own retries are
//! off for registry members: each member is a client of its own, and only this loop knows that a
//! session must be attached before it is used on another member.

use std::time::Duration;

use tokio::time::Instant;

use super::RegistryClient;
use super::policy::{FailoverPolicy, RetryNotice, describe, is_unreachable};
use crate::error::{ErrorKind, RegistryError};

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
/// succeeds, a failure that `plan.retry` does not allow, or the deadline (under
/// [`FailoverPolicy::OnePass`], until every member was tried once). Returns the answer and the
/// member that gave it.
///
/// When it gives up after failures that all allowed another attempt, it reports the last answer
/// a member gave (say, "no quorum") rather than the connection failures of members that are
/// down, which say less; when no member could be reached at all, it names each with its cause.
/// After one pass it names every member with its cause, whatever the causes were. The client's
/// [`OnRetry`](super::OnRetry) hears of the request's first failure that leads to another
/// attempt.
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
    let policy = client.options().failover;
    let mut tried = 0usize;
    let mut answered: Option<RegistryError> = None;
    // Why each member could not be reached, if it could not (its last failure).
    let mut unreachable: Vec<Option<String>> = vec![None; members];
    // Each member's last failure, for the error of a request that made its one pass.
    let mut failures: Vec<Option<RegistryError>> = vec![None; members];
    let mut notified = false;
    loop {
        let member = (plan.start + tried) % members;
        let error = match attempt(member).await {
            Ok(value) => return Ok((value, member)),
            Err(error) => error,
        };
        let addr = client.addr(member).to_string();
        if is_unreachable(&error) {
            unreachable[member] = Some(describe(&error, &addr));
        }
        failures[member] = Some(error.clone());
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
        if policy == FailoverPolicy::OnePass && tried + 1 >= members {
            return Err(one_pass_failed(client, &failures, &unreachable, error));
        }
        tracing::debug!(member = %addr, %error, "registry request failed; trying another member");
        if !notified {
            notified = true;
            if let Some(hook) = &client.options().on_retry {
                hook.call(&RetryNotice {
                    member: client.addr(member),
                    error: error.clone(),
                    members,
                    policy,
                    remaining: plan
                        .deadline
                        .map(|d| d.saturating_duration_since(Instant::now())),
                });
            }
        }
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

/// The error for a request that failed once on every member (one pass): every member with its
/// cause. Its kind is the most telling of the failures: "outcome unknown" if an attempt may
/// have been performed (a write must not be taken as not applied), else "no quorum" if a member
/// answered that it has no leader or quorum (or is shutting down), else "unreachable" when no
/// member could be reached at all.
fn one_pass_failed(
    client: &RegistryClient,
    failures: &[Option<RegistryError>],
    unreachable: &[Option<String>],
    last: RegistryError,
) -> RegistryError {
    let failed: Vec<(usize, &RegistryError)> = failures
        .iter()
        .enumerate()
        .filter_map(|(member, error)| Some((member, error.as_ref()?)))
        .collect();
    if failed.len() < 2 {
        return last;
    }
    if failed.iter().all(|(_, error)| is_unreachable(error)) {
        return none_reached(client, unreachable, last);
    }
    let causes: Vec<String> = failed
        .iter()
        .map(|(member, error)| {
            let addr = client.addr(*member).to_string();
            format!("{addr}: {}", describe(error, &addr))
        })
        .collect();
    let detail = format!(
        "none of the {} members could serve the request, each tried once ({})",
        failed.len(),
        causes.join("; ")
    );
    let kinds: Vec<ErrorKind> = failed.iter().map(|(_, error)| error.kind()).collect();
    if kinds.contains(&ErrorKind::OutcomeUnknown) {
        RegistryError::Indeterminate(detail)
    } else if kinds.contains(&ErrorKind::NoQuorum) {
        RegistryError::NoQuorum(detail)
    } else {
        // Failures of another kind (a session that moved, a watch cut off): the last one, as
        // the deadline's rule reports it.
        last
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::client::ClientOptions;

    fn client(members: usize) -> RegistryClient {
        client_with(members, ClientOptions::default())
    }

    fn client_with(members: usize, options: ClientOptions) -> RegistryClient {
        // Port 1 on loopback refuses at once; nothing here connects anyway.
        let servers: Vec<std::net::SocketAddr> = (0..members)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1 + i as u8], 1)))
            .collect();
        RegistryClient::new(&servers, options)
    }

    fn one_pass(members: usize) -> RegistryClient {
        client_with(
            members,
            ClientOptions {
                failover: FailoverPolicy::OnePass,
                ..ClientOptions::default()
            },
        )
    }

    /// A refusal as rmif-core reports it for a member's own connection.
    fn refused_at(member: usize) -> RegistryError {
        RegistryError::Rpc(rmif_core::Error::NoProvider {
            service: "rmif.Registry".into(),
            detail: format!(" (127.0.0.{}:1: connection refused)", member + 1),
        })
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

    #[tokio::test(start_paused = true)]
    async fn one_pass_tries_each_member_once_then_names_each_with_its_cause() {
        let client = one_pass(3);
        let started = Instant::now();
        let answers = (0..3).map(|m| Err(refused_at((m + 1) % 3))).collect();
        let (outcome, tried) = script(
            &client,
            plan(1, Retry::Retryable, Some(Duration::from_secs(10))),
            answers,
        )
        .await;
        assert_eq!(tried, [1, 2, 0], "each member once, from the preferred one");
        // No pause between rounds: there is no second round.
        assert_eq!(started.elapsed(), Duration::ZERO);
        let error = outcome.unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Unreachable);
        let text = error.to_string();
        for member in ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"] {
            assert!(
                text.contains(&format!("{member}: connection refused")),
                "{text}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_pass_does_not_wait_for_an_election() {
        let client = one_pass(3);
        let no_leader = RegistryError::NoQuorum("no leader".into());
        let answers = vec![
            Err(refused_at(0)),
            Err(no_leader.clone()),
            Err(no_leader.clone()),
            Ok(1),
        ];
        let (outcome, tried) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(10))),
            answers,
        )
        .await;
        assert_eq!(tried, [0, 1, 2]);
        let error = outcome.unwrap_err();
        // A member answered: the cluster is up but has no leader, which is not "unreachable".
        assert_eq!(error.kind(), crate::ErrorKind::NoQuorum);
        let text = error.to_string();
        assert!(text.contains("127.0.0.1:1: connection refused"), "{text}");
        assert!(text.contains("127.0.0.2:1: no quorum: no leader"), "{text}");
        assert!(text.contains("127.0.0.3:1: no quorum: no leader"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_pass_still_moves_past_a_dead_member() {
        let client = one_pass(3);
        let (outcome, tried) = script(
            &client,
            plan(2, Retry::Retryable, Some(Duration::from_secs(10))),
            vec![Err(refused_at(2)), Ok(4)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (4, 0));
        assert_eq!(tried, [2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_pass_with_an_attempt_that_may_have_run_says_outcome_unknown() {
        let client = one_pass(2);
        let (outcome, _) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(10))),
            vec![Err(lost()), Err(refused_at(1))],
        )
        .await;
        let error = outcome.unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::OutcomeUnknown);
        assert!(
            error
                .to_string()
                .contains("127.0.0.2:1: connection refused"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_retry_of_a_request_is_told_once_with_member_cause_and_time_left() {
        let notices = std::sync::Arc::new(Mutex::new(Vec::new()));
        let heard = notices.clone();
        let client = client_with(
            3,
            ClientOptions {
                on_retry: Some(super::super::OnRetry::new(move |notice| {
                    heard.lock().unwrap().push(notice.to_string())
                })),
                ..ClientOptions::default()
            },
        );
        let (outcome, _) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(10))),
            vec![Err(refused_at(0)), Err(refused_at(1)), Err(lost()), Ok(2)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (2, 0));
        assert_eq!(
            *notices.lock().unwrap(),
            [
                "127.0.0.1:1 unreachable (connection refused); trying the other members for up to 10s"
            ]
        );
        // A request served at once tells nothing.
        let (outcome, _) = script(
            &client,
            plan(0, Retry::Retryable, Some(Duration::from_secs(10))),
            vec![Ok(3)],
        )
        .await;
        assert_eq!(outcome.unwrap(), (3, 0));
        assert_eq!(notices.lock().unwrap().len(), 1);
    }
}
