//! A process's presence in the registry: ephemeral nodes held by one session, kept while the
//! presence lives and created again under a new session if the registry ever expires the old
//! one. Providers hold one node per service they serve; consumers one per service they call,
//! added as they start calling it.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::client::{CreateMode, RegistryClient, Session, SessionState};
use crate::error::RegistryError;

/// One ephemeral node a presence keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// Its path; for a sequential node, the prefix of its name.
    pub(crate) path: String,
    /// Its data.
    pub(crate) data: Vec<u8>,
    /// A sequence number is appended to the name (several holders of one path prefix).
    pub(crate) sequential: bool,
}

/// Pause between attempts to open a session or create nodes while the registry is away.
const RETRY: Duration = Duration::from_millis(500);

/// Nodes held by one session, and the task that keeps them.
#[derive(Debug)]
pub(crate) struct Presence {
    add: mpsc::UnboundedSender<Held>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    held: watch::Receiver<bool>,
}

impl Presence {
    /// Opens a session, creates `nodes`, and returns once they exist; keeps them from then on.
    pub(crate) async fn hold(
        client: RegistryClient,
        nodes: Vec<Held>,
        session_timeout: Duration,
    ) -> Result<Presence, RegistryError> {
        let session = client.open_session(session_timeout).await?;
        for node in &nodes {
            create(&session, node).await?;
        }
        Ok(Self::keep(client, Some(session), nodes, session_timeout))
    }

    /// Holds `nodes` (and whatever is added later) from now on, opening the session in the
    /// background: for consumers, which must not wait for the registry to start calling.
    pub(crate) fn hold_in_background(
        client: RegistryClient,
        nodes: Vec<Held>,
        session_timeout: Duration,
    ) -> Presence {
        Self::keep(client, None, nodes, session_timeout)
    }

    fn keep(
        client: RegistryClient,
        session: Option<Session>,
        nodes: Vec<Held>,
        session_timeout: Duration,
    ) -> Presence {
        let (add, added) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let (held_tx, held) = watch::channel(session.is_some());
        let task = tokio::spawn(upkeep(
            client,
            session,
            nodes,
            session_timeout,
            added,
            held_tx,
            stop.clone(),
        ));
        Presence {
            add,
            stop,
            task: Some(task),
            held,
        }
    }

    /// Holds one more node (created at once if the session is up, else when it is).
    pub(crate) fn add(&self, node: Held) {
        let _ = self.add.send(node);
    }

    /// True while every node is known to exist.
    pub(crate) fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves once every node is known to exist.
    pub(crate) async fn wait_held(&self) {
        let mut held = self.held.clone();
        let _ = held.wait_for(|held| *held).await;
    }

    /// Ends the session now, which deletes the nodes, then returns.
    pub(crate) async fn withdraw(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Creates one held node in `session`, its parents first.
async fn create(session: &Session, node: &Held) -> Result<(), RegistryError> {
    session
        .client()
        .create_path(crate::path::parent(&node.path))
        .await?;
    let mode = CreateMode {
        ephemeral: true,
        sequential: node.sequential,
    };
    match session.create(&node.path, &node.data, mode).await {
        Ok(_) => Ok(()),
        // Left by this process's previous session, not yet expired: replace it.
        Err(RegistryError::NodeExists { .. }) if !node.sequential => {
            let _ = session.delete(&node.path, None).await;
            session
                .create(&node.path, &node.data, mode)
                .await
                .map(|_| ())
        }
        Err(error) => Err(error),
    }
}

/// Opens a session and creates every node in it, until it works or `stop`.
async fn establish(
    client: &RegistryClient,
    nodes: &[Held],
    session_timeout: Duration,
    stop: &CancellationToken,
) -> Option<Session> {
    loop {
        let attempt = async {
            let session = client.open_session(session_timeout).await?;
            for node in nodes {
                create(&session, node).await?;
            }
            Ok::<_, RegistryError>(session)
        };
        tokio::select! {
            _ = stop.cancelled() => return None,
            outcome = attempt => match outcome {
                Ok(session) => return Some(session),
                Err(error) => {
                    tracing::warn!(%error, nodes = nodes.len(), "cannot hold the nodes in the registry yet");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upkeep(
    client: RegistryClient,
    mut session: Option<Session>,
    mut nodes: Vec<Held>,
    session_timeout: Duration,
    mut added: mpsc::UnboundedReceiver<Held>,
    held: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let current = match session.take() {
            Some(current) => current,
            None => match establish(&client, &nodes, session_timeout, &stop).await {
                Some(fresh) => fresh,
                None => return,
            },
        };
        held.send_replace(true);
        let mut states = current.states();
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = current.close().await;
                    held.send_replace(false);
                    return;
                }
                // The guard the wait returns must not live across the select's other awaits.
                _ = async { states.wait_for(|s| *s == SessionState::Expired).await.map(|_| ()) } => break,
                node = added.recv() => {
                    let Some(node) = node else { continue };
                    let created = create(&current, &node).await;
                    nodes.push(node);
                    if let Err(error) = created {
                        // Start over under a new session, whose creation covers every node;
                        // the old one goes first, so that no node is held twice.
                        tracing::warn!(%error, "cannot create a node in the registry; holding every node again");
                        let _ = current.close().await;
                        break;
                    }
                }
            }
        }
        held.send_replace(false);
        // Expired sessions are never revived: the nodes are created again under a new one.
        tracing::warn!(
            nodes = nodes.len(),
            "the registry expired this process's session; holding its nodes again"
        );
    }
}
