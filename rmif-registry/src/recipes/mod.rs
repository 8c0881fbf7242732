//! Coordination recipes on the registry's tree: [`election`] (one leader among candidates, with
//! a token for the resources it touches), [`lock`] (a fair lock whose every grant carries a
//! fencing token, and a read-write variant), [`config`] (typed values, versioned and pushed)
//! and [`schedule`] (a task at a fixed rate on exactly one of several processes). Elections
//! and locks queue their participants as ephemeral sequential nodes, each waiting
//! only for the node just before its own, so a change wakes one participant, not all.

pub mod config;
pub mod election;
pub mod lock;
pub mod schedule;

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::api::{ChildList, Created, WatchMode};
use crate::client::{CreateMode, RegistryClient};
use crate::error::RegistryError;
use crate::{Consistency, Session, SessionState};
use tokio::sync::watch;

/// Digits of the counter the registry appends to a sequential node's name.
const SEQUENCE_DIGITS: usize = 10;

/// The children of `parent` that are queue entries (`prefix` + sequence), in queue order.
pub(crate) fn queue_order(list: ChildList, prefixes: &[&str]) -> Vec<String> {
    let mut entries: Vec<String> = list
        .children
        .into_iter()
        .filter(|name| {
            name.len() > SEQUENCE_DIGITS
                && prefixes
                    .iter()
                    .any(|p| name.len() == p.len() + SEQUENCE_DIGITS && name.starts_with(p))
        })
        .collect();
    entries.sort_by(|a, b| sequence(a).cmp(sequence(b)));
    entries
}

/// The sequence part of a queue entry's name.
fn sequence(name: &str) -> &str {
    &name[name.len() - SEQUENCE_DIGITS..]
}

/// Waits until the node at `path` is gone (at once if it is already). Watches that node only.
pub(crate) async fn deleted(client: &RegistryClient, path: &str) -> Result<(), RegistryError> {
    loop {
        let mut watcher = client.watch(path, WatchMode::Data).await?;
        // The watch is armed once its first message arrives; a deletion before that is seen by
        // the read that follows.
        match watcher.next().await {
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => continue,
        }
        if gone(client, path).await? {
            return Ok(());
        }
        loop {
            match watcher.next().await {
                Some(Ok(message)) if message.is_armed() => {}
                // A change of the node: deleted, or its data changed (then wait again).
                Some(Ok(_)) => break,
                Some(Err(error)) => return Err(error),
                None => break,
            }
        }
        if gone(client, path).await? {
            return Ok(());
        }
    }
}

/// Whether the node at `path` is gone now.
async fn gone(client: &RegistryClient, path: &str) -> Result<bool, RegistryError> {
    match client.stat(path, Consistency::Linearizable).await {
        Err(RegistryError::NoNode { .. }) => Ok(true),
        Err(error) => Err(error),
        Ok(_) => Ok(false),
    }
}

/// Creates a queue entry (an ephemeral sequential node `prefix` + sequence) in `session`.
/// Safe to cancel: the create runs in a task of its own, which removes the node if the caller
/// stopped waiting before it was told the node's name (else that node would stay in line, and
/// block everyone behind it, for as long as the session lives).
pub(crate) async fn create_entry(
    session: &Arc<Session>,
    prefix: String,
    data: Vec<u8>,
) -> Result<Created, RegistryError> {
    let (answer, answered) = oneshot::channel();
    let session = session.clone();
    tokio::spawn(async move {
        let ephemeral_sequential = CreateMode {
            ephemeral: true,
            sequential: true,
        };
        let created = session.create(&prefix, &data, ephemeral_sequential).await;
        if let Err(Ok(created)) = answer.send(created) {
            remove_entry(session, created.path);
        }
    });
    answered.await.unwrap_or_else(|_| {
        Err(RegistryError::Indeterminate(
            "the task creating the entry stopped (the runtime is shutting down)".to_owned(),
        ))
    })
}

/// Deletes the queue entry `path` of `session`, in the background if the caller cannot wait
/// (a guard being dropped). An entry whose session ended is already gone.
pub(crate) fn remove_entry(session: Arc<Session>, path: String) {
    tokio::spawn(async move {
        match session.delete(&path, None).await {
            Ok(_)
            | Err(RegistryError::NoNode { .. })
            | Err(RegistryError::SessionExpired { .. }) => {}
            Err(error) => {
                tracing::warn!(%path, %error, "could not remove a queue entry; it goes when its session ends")
            }
        }
    });
}

/// Why a session in `state` can hold nothing any more, if it cannot.
pub(crate) fn ended(state: SessionState) -> Option<String> {
    match state {
        SessionState::Expired => Some("the session expired".to_owned()),
        SessionState::Closed => Some("the session was closed".to_owned()),
        _ => None,
    }
}

/// Resolves when the session ends (expired or closed).
pub(crate) async fn session_ended(sessions: &mut watch::Receiver<SessionState>) -> String {
    loop {
        if let Some(reason) = ended(*sessions.borrow_and_update()) {
            return reason;
        }
        if sessions.changed().await.is_err() {
            return "the session is gone".to_owned();
        }
    }
}

/// Resolves when whatever `session` holds (a leadership, a lock) must be taken as lost, and
/// says why: the session expired or was closed, or it has been suspended past
/// [`Session::alive_until`], after which the registry may have expired it and granted what it
/// held to someone else.
///
/// Whoever acts on behalf of a leadership or a lock stops acting when this resolves.
pub async fn session_lost(session: &Session) -> String {
    let mut sessions = session.states();
    loop {
        let state = *sessions.borrow_and_update();
        if let Some(reason) = ended(state) {
            return reason;
        }
        let suspended = state == SessionState::Suspended;
        tokio::select! {
            changed = sessions.changed() => {
                if changed.is_err() {
                    return "the session is gone".to_owned();
                }
            }
            _ = tokio::time::sleep_until(session.alive_until()), if suspended => {
                return format!(
                    "no contact with the registry for long enough that it may have expired the session ({} ms timeout)",
                    session.timeout().as_millis()
                );
            }
        }
    }
}
