//! The registry's client API on a member: writes go through the replica, reads wait for the
//! right point (a read index, or just the client's last seen zxid for stale reads).

use std::sync::Arc;
use std::time::Duration;

use rmif_core::CallContext;
use tokio::time::Instant;

use rmif_core::Streaming;

use rmif_registry::api::{
    AttachSessionRequest, ChildList, CreateRequest, Created, DeleteRequest, KeepAliveAck,
    MemberStatus, MultiRequest, MultiResponse, NodeData, NodeStat, OpenSessionRequest, ReadRequest,
    Registry, SessionGrant, SessionRequest, SetRequest, Synced, WatchMessage, WatchRequest,
    Written,
};
use rmif_registry::node::check_data_len;
use rmif_registry::op::{MAX_MULTI_OPS, SessionCall};
use rmif_registry::{RegistryError, path};

use crate::replica::Replica;
use crate::tree::{Action, ActionResult, Applied, SessionOwner, Tree};
use crate::watch;

/// Answers are sent this long before the caller's deadline, so that "no quorum" reaches it
/// instead of a timeout.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);
/// Deadline when the caller gave none.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Who this member is, and the limits it grants sessions.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Raft id.
    pub id: u64,
    /// Client API address.
    pub client_addr: String,
    /// Every member's id and peer address.
    pub members: Vec<(u64, String)>,
    /// Smallest session timeout granted.
    pub min_session_timeout: Duration,
    /// Largest session timeout granted.
    pub max_session_timeout: Duration,
}

/// The [`Registry`] service of one member.
#[derive(Clone)]
pub struct RegistryService {
    replica: Replica,
    identity: Arc<Identity>,
}

impl RegistryService {
    /// The service over `replica`.
    pub fn new(replica: Replica, identity: Identity) -> Self {
        RegistryService {
            replica,
            identity: Arc::new(identity),
        }
    }

    fn deadline() -> Instant {
        let now = Instant::now();
        CallContext::current()
            .and_then(|call| call.deadline())
            .map(|deadline| {
                deadline
                    .checked_sub(DEADLINE_MARGIN)
                    .unwrap_or(deadline)
                    .max(now)
            })
            .unwrap_or(now + DEFAULT_DEADLINE)
    }

    async fn write(
        &self,
        action: Action,
        session: Option<SessionCall>,
    ) -> Result<(ActionResult, u64), RegistryError> {
        if let Some(call) = session {
            self.check_holder(call.session)?;
        }
        let Applied { zxid, outcome, .. } = self
            .replica
            .propose(action, session, Self::deadline())
            .await?;
        Ok((outcome?, zxid))
    }

    /// The calling connection, as session owners are recorded.
    fn caller(&self) -> SessionOwner {
        SessionOwner {
            member: self.identity.id,
            connection: CallContext::current()
                .map(|call| call.peer().to_string())
                .unwrap_or_default(),
        }
    }

    /// Refuses a session that is gone or held by another connection.
    fn check_holder(&self, session: u64) -> Result<(), RegistryError> {
        let tree = self
            .replica
            .shared()
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match tree.session(session) {
            None => Err(RegistryError::SessionExpired { session }),
            Some(found) if found.owner != self.caller() => Err(RegistryError::SessionRejected {
                session,
                reason: "the session moved to another connection; attach it again with its secret"
                    .to_owned(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn grant(
        &self,
        result: ActionResult,
        secret: u64,
        zxid: u64,
    ) -> Result<SessionGrant, RegistryError> {
        match result {
            ActionResult::SessionOpened {
                session,
                timeout_ms,
            }
            | ActionResult::SessionAttached {
                session,
                timeout_ms,
            } => Ok(SessionGrant {
                session,
                secret,
                timeout_ms,
                zxid,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until this member may answer a read, then reads the tree.
    async fn read<T>(
        &self,
        request: &ReadRequest,
        read: impl FnOnce(&Tree) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        path::validate(&request.path)?;
        let deadline = Self::deadline();
        if !request.stale {
            self.replica.read_index(deadline).await?;
        }
        if *self.replica.shared().applied.borrow() < request.min_zxid {
            self.replica
                .wait_applied(request.min_zxid, deadline)
                .await?;
        }
        let tree = self
            .replica
            .shared()
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner());
        read(&tree)
    }
}

/// A request answered with another kind of result: the registry answers a retried session
/// request from what it remembers of that request number, so the client sent two different
/// requests under one number.
fn unexpected(result: ActionResult) -> RegistryError {
    RegistryError::BadRequest(format!(
        "this session's request number was already used by another request (which returned \
         {result:?}); a session request is retried with its own number only"
    ))
}

impl Registry for RegistryService {
    async fn create(&self, request: CreateRequest) -> Result<Created, RegistryError> {
        path::validate(&request.path)?;
        check_data_len(&request.path, &request.data)?;
        let action = Action::Create {
            path: request.path,
            data: request.data,
            ephemeral: request.ephemeral,
            sequential: request.sequential,
        };
        match self.write(action, request.session).await? {
            (ActionResult::Created { path, stat }, zxid) => Ok(Created { path, stat, zxid }),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn set(&self, request: SetRequest) -> Result<Written, RegistryError> {
        path::validate(&request.path)?;
        check_data_len(&request.path, &request.data)?;
        let action = Action::Set {
            path: request.path,
            data: request.data,
            version: request.version,
        };
        match self.write(action, request.session).await? {
            (ActionResult::Set { stat }, zxid) => Ok(Written {
                stat: Some(stat),
                zxid,
            }),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn delete(&self, request: DeleteRequest) -> Result<Written, RegistryError> {
        path::validate(&request.path)?;
        let action = Action::Delete {
            path: request.path,
            version: request.version,
        };
        match self.write(action, request.session).await? {
            (ActionResult::Deleted, zxid) => Ok(Written { stat: None, zxid }),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn multi(&self, request: MultiRequest) -> Result<MultiResponse, RegistryError> {
        if request.ops.len() > MAX_MULTI_OPS {
            return Err(RegistryError::BadRequest(format!(
                "a multi holds at most {} operations, not {}",
                MAX_MULTI_OPS,
                request.ops.len()
            )));
        }
        match self
            .write(Action::Multi(request.ops), request.session)
            .await?
        {
            (ActionResult::Multi(results), zxid) => Ok(MultiResponse { results, zxid }),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn get(&self, request: ReadRequest) -> Result<NodeData, RegistryError> {
        self.read(&request, |tree| {
            let (data, stat) = tree.get(&request.path)?;
            Ok(NodeData {
                data,
                stat,
                zxid: tree.last_zxid(),
            })
        })
        .await
    }

    async fn children(&self, request: ReadRequest) -> Result<ChildList, RegistryError> {
        self.read(&request, |tree| {
            let (children, stat) = tree.children(&request.path)?;
            Ok(ChildList {
                children,
                stat,
                zxid: tree.last_zxid(),
            })
        })
        .await
    }

    async fn stat(&self, request: ReadRequest) -> Result<NodeStat, RegistryError> {
        self.read(&request, |tree| {
            Ok(NodeStat {
                stat: tree.stat(&request.path)?,
                zxid: tree.last_zxid(),
            })
        })
        .await
    }

    async fn sync(&self) -> Result<Synced, RegistryError> {
        let zxid = self.replica.read_index(Self::deadline()).await?;
        Ok(Synced { zxid })
    }

    async fn open_session(
        &self,
        request: OpenSessionRequest,
    ) -> Result<SessionGrant, RegistryError> {
        let timeout = Duration::from_millis(request.timeout_ms).clamp(
            self.identity.min_session_timeout,
            self.identity.max_session_timeout,
        );
        // Nonzero, so that a forgotten field never matches.
        let secret = fastrand::u64(1..);
        let action = Action::OpenSession {
            timeout_ms: timeout.as_millis() as u64,
            secret,
            owner: self.caller(),
        };
        let (result, zxid) = self.write(action, None).await?;
        self.grant(result, secret, zxid)
    }

    async fn attach_session(
        &self,
        request: AttachSessionRequest,
    ) -> Result<SessionGrant, RegistryError> {
        let action = Action::AttachSession {
            session: request.session,
            secret: request.secret,
            owner: self.caller(),
        };
        let (result, zxid) = self.write(action, None).await?;
        self.grant(result, request.secret, zxid)
    }

    async fn keep_alive(&self, request: SessionRequest) -> Result<KeepAliveAck, RegistryError> {
        self.check_holder(request.session)?;
        let shared = self.replica.shared();
        let leader = shared
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .leader;
        if leader == 0 {
            // Heartbeats only count if they can reach the leader; the client should move on.
            return Err(RegistryError::NoQuorum(
                "this member has no leader; try another member".to_owned(),
            ));
        }
        self.replica.touch(request.session);
        Ok(KeepAliveAck {
            zxid: *shared.applied.borrow(),
        })
    }

    async fn close_session(&self, request: SessionRequest) -> Result<Written, RegistryError> {
        let call = SessionCall {
            session: request.session,
            request_id: request.request_id,
        };
        let action = Action::CloseSession {
            session: request.session,
        };
        match self.write(action, Some(call)).await? {
            (ActionResult::SessionClosed { .. }, zxid) => Ok(Written { stat: None, zxid }),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn watch(
        &self,
        request: WatchRequest,
    ) -> Result<Streaming<WatchMessage, RegistryError>, RegistryError> {
        path::validate(&request.path)?;
        // Never arm or resume a watcher from a state older than one its client has seen.
        let seen = request.since_zxid.unwrap_or(0).max(request.min_zxid);
        if *self.replica.shared().applied.borrow() < seen {
            self.replica.wait_applied(seen, Self::deadline()).await?;
        }
        if request.with_state && request.mode.is_one_shot() {
            return Err(RegistryError::BadRequest(format!(
                "{}: an initial state is for persistent and recursive watches",
                request.path
            )));
        }
        let spec = watch::WatchSpec {
            watched: request.path,
            mode: request.mode,
            with_data: request.with_data,
            // A resumed watch gets what it missed, not the state again.
            with_state: request.with_state && request.since_zxid.is_none(),
        };
        let shared = self.replica.shared().clone();
        let subscription = shared.subscribe(request.since_zxid);
        Ok(watch::open(shared, spec, subscription))
    }

    async fn member_status(&self) -> Result<MemberStatus, RegistryError> {
        let shared = self.replica.shared();
        let raft = shared
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (nodes, sessions, digest) = {
            let tree = shared.tree.read().unwrap_or_else(|p| p.into_inner());
            (
                tree.node_count() as u64,
                tree.sessions().count() as u64,
                tree.digest(),
            )
        };
        let identity = &self.identity;
        let peer_addr = identity
            .members
            .iter()
            .find(|(id, _)| *id == identity.id)
            .map(|(_, addr)| addr.clone())
            .unwrap_or_default();
        Ok(MemberStatus {
            id: identity.id,
            client_addr: identity.client_addr.clone(),
            peer_addr,
            role: raft.role,
            term: raft.term,
            leader: raft.leader,
            commit: raft.commit,
            applied: raft.applied,
            snapshot: raft.snapshot,
            nodes,
            sessions,
            digest,
            members: identity.members.clone(),
        })
    }
}
