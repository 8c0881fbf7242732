//! Leader election: of the candidates of one election, the one that entered first leads, until
//! it resigns or its session ends; then the next in line does.
//!
//! Each candidate is an ephemeral sequential node under `/rmif/elections/{name}`, holding the
//! candidate's id; each waits for the node just before its own. The leader gets a token (the
//! zxid of its node, higher for every later leader) to hand to the resources it acts on.
//!
//! A leader cut off from the registry cannot know when the registry expires its session and
//! lets the next candidate lead. It therefore gives up leadership ([`Leadership::Lost`]) as
//! soon as its session is suspended past [`Session::alive_until`]: before, by its own clock,
//! the registry could have expired the session. So two candidates never both act as leader
//! while the registry granted leadership to one of them (given clocks that run at about the
//! same rate).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use rmif_registry::RegistryClient;
//! use rmif_registry::recipes::election::{Election, Leadership};
//! # use rmif_registry_server::{RegistryConfig, RegistryServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! # let members = [member.client_addr()];
//! let client = RegistryClient::connect(&members);
//! let session = Arc::new(client.open_session(Duration::from_secs(5)).await?);
//! let election = Election::new(session, "nightly-batch").await?;
//!
//! let mut me = election.campaign("worker-1").await?;
//! let token = me.leading().await?;
//! assert_eq!(Election::leader(&client, "nightly-batch").await?.as_deref(), Some("worker-1"));
//! assert_eq!(me.state(), Leadership::Leading { token });
//! me.resign().await?;
//! assert_eq!(Election::leader(&client, "nightly-batch").await?, None);
//! # member.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{create_entry, deleted, ended, queue_order, remove_entry, session_ended};
use crate::error::RegistryError;
use crate::path::name as name_of;
use crate::{Consistency, RegistryClient, Session, SessionState};

/// Where elections live in the tree.
pub const ELECTIONS_PATH: &str = "/rmif/elections";

/// The prefix of a candidate's node name.
const CANDIDATE: &str = "candidate-";

/// How long a candidate waits before reading the queue again after a failed read.
const RETRY_READ: Duration = Duration::from_millis(100);

/// One election, entered in a session.
#[derive(Debug, Clone)]
pub struct Election {
    session: Arc<Session>,
    path: String,
}

/// Where a candidate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// In line behind another candidate.
    Waiting,
    /// Leading, with this token (higher for every later leader of the election).
    Leading {
        /// The zxid of the candidate's node.
        token: u64,
    },
    /// No longer a candidate; the reason says why. Final: campaign again to stand again.
    Lost {
        /// Why: the session was suspended too long, it expired, or the candidate's node was
        /// deleted.
        reason: String,
    },
}

/// A candidate in an election. Dropping it withdraws the candidacy (in the background).
#[derive(Debug)]
pub struct Candidacy {
    state: watch::Receiver<Leadership>,
    session: Arc<Session>,
    node: String,
    stop: CancellationToken,
}

impl Election {
    /// The election `name` (a single path segment), entered in `session`.
    pub async fn new(session: Arc<Session>, name: &str) -> Result<Self, RegistryError> {
        let path = format!("{ELECTIONS_PATH}/{name}");
        crate::path::validate(&path)?;
        session.client().create_path(&path).await?;
        Ok(Election { session, path })
    }

    /// Stands as candidate `id` (what [`Election::leader`] reports while it leads).
    pub async fn campaign(&self, id: &str) -> Result<Candidacy, RegistryError> {
        let prefix = format!("{}/{CANDIDATE}", self.path);
        let created = create_entry(&self.session, prefix, id.as_bytes().to_vec()).await?;
        let (state, states) = watch::channel(Leadership::Waiting);
        let stop = CancellationToken::new();
        tokio::spawn(stand(
            self.session.clone(),
            self.path.clone(),
            created.path.clone(),
            created.stat.czxid,
            state,
            stop.clone(),
        ));
        Ok(Candidacy {
            state: states,
            session: self.session.clone(),
            node: created.path,
            stop,
        })
    }

    /// The id of the candidate leading election `name` now, if any.
    pub async fn leader(
        client: &RegistryClient,
        name: &str,
    ) -> Result<Option<String>, RegistryError> {
        let path = format!("{ELECTIONS_PATH}/{name}");
        let list = match client.children(&path, Consistency::Linearizable).await {
            Ok(list) => list,
            Err(RegistryError::NoNode { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        for first in queue_order(list, &[CANDIDATE]) {
            match client
                .get(&format!("{path}/{first}"), Consistency::Linearizable)
                .await
            {
                Ok(node) => return Ok(Some(String::from_utf8_lossy(&node.data).into_owned())),
                // Gone since the list was read: the next one leads.
                Err(RegistryError::NoNode { .. }) => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
}

impl Candidacy {
    /// Where this candidate stands now.
    pub fn state(&self) -> Leadership {
        self.state.borrow().clone()
    }

    /// Follows where this candidate stands.
    pub fn changes(&self) -> watch::Receiver<Leadership> {
        self.state.clone()
    }

    /// Waits until this candidate leads; returns its token. Fails with the reason if the
    /// candidacy is lost first.
    pub async fn leading(&mut self) -> Result<u64, Lost> {
        let state = self
            .state
            .wait_for(|s| !matches!(s, Leadership::Waiting))
            .await
            .map_err(|_| Lost {
                reason: "the candidacy ended".to_owned(),
            })?
            .clone();
        match state {
            Leadership::Leading { token } => Ok(token),
            Leadership::Lost { reason } => Err(Lost { reason }),
            Leadership::Waiting => unreachable!("waited past it"),
        }
    }

    /// Waits until leadership (or the candidacy) is lost; returns why.
    pub async fn lost(&mut self) -> String {
        match self
            .state
            .wait_for(|s| matches!(s, Leadership::Lost { .. }))
            .await
        {
            Ok(state) => match &*state {
                Leadership::Lost { reason } => reason.clone(),
                _ => unreachable!("waited for it"),
            },
            Err(_) => "the candidacy ended".to_owned(),
        }
    }

    /// Gives up leadership (or the place in line) now: the next candidate leads.
    pub async fn resign(mut self) -> Result<(), RegistryError> {
        self.stop.cancel();
        // Taken, so that dropping `self` does not remove it again.
        let node = std::mem::take(&mut self.node);
        let session = self.session.clone();
        drop(self);
        match session.delete(&node, None).await {
            Ok(_) | Err(RegistryError::NoNode { .. }) => Ok(()),
            Err(error) => {
                remove_entry(session, node);
                Err(error)
            }
        }
    }
}

impl Drop for Candidacy {
    fn drop(&mut self) {
        self.stop.cancel();
        if !self.node.is_empty() {
            remove_entry(self.session.clone(), std::mem::take(&mut self.node));
        }
    }
}

/// A candidacy that ended before (or after) leading, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leadership lost: {reason}")]
pub struct Lost {
    /// Why (see [`Leadership::Lost`]).
    pub reason: String,
}

/// The candidate's task: waits its turn, leads, and says when it must stop.
async fn stand(
    session: Arc<Session>,
    election: String,
    node: String,
    token: u64,
    state: watch::Sender<Leadership>,
    stop: CancellationToken,
) {
    let outcome = tokio::select! {
        outcome = wait_turn_then_lead(&session, &election, &node, token, &state) => outcome,
        _ = stop.cancelled() => return,
    };
    let reason = match outcome {
        Ok(reason) | Err(reason) => reason,
    };
    tracing::info!(%node, %reason, "candidacy lost");
    state.send_replace(Leadership::Lost { reason });
}

/// Runs the candidacy until it is lost; returns why.
async fn wait_turn_then_lead(
    session: &Session,
    election: &str,
    node: &str,
    token: u64,
    state: &watch::Sender<Leadership>,
) -> Result<String, String> {
    let client = session.client();
    let mut sessions = session.states();
    // In line: wait for the node before this one to go, each time reading the line again.
    loop {
        let list = match client.children(election, Consistency::Linearizable).await {
            Ok(list) => list,
            Err(error) => {
                if let Some(reason) = ended(*sessions.borrow()) {
                    return Err(reason);
                }
                tracing::debug!(%error, "cannot read the election's candidates yet");
                tokio::time::sleep(RETRY_READ).await;
                continue;
            }
        };
        let queue = queue_order(list, &[CANDIDATE]);
        let Some(place) = queue.iter().position(|n| n == name_of(node)) else {
            return Err("the candidate's node is gone (its session ended)".to_owned());
        };
        if place == 0 {
            break;
        }
        let before = format!("{election}/{}", queue[place - 1]);
        tokio::select! {
            gone = deleted(client, &before) => {
                if let Err(error) = gone {
                    tracing::debug!(%error, "lost the watch on the candidate before; reading again");
                    tokio::time::sleep(RETRY_READ).await;
                }
            }
            reason = session_ended(&mut sessions) => return Err(reason),
        }
    }
    // First in line. Lead only while the session is surely alive.
    loop {
        if let Some(reason) = ended(*sessions.borrow_and_update()) {
            return Err(reason);
        }
        if *sessions.borrow() != SessionState::Suspended {
            break;
        }
        let _ = sessions.changed().await;
    }
    tracing::info!(%node, token, "leading");
    state.send_replace(Leadership::Leading { token });
    tokio::select! {
        reason = super::session_lost(session) => Err(reason),
        gone = deleted(client, node) => Err(match gone {
            Ok(()) => "the candidate's node was deleted".to_owned(),
            Err(error) => format!("cannot follow the candidate's node: {error}"),
        }),
    }
}
