//! A call and the service it is made to: what every call of one service shares
//! ([`ServiceTarget`]: the route to its providers, each method's settings, encoding, limits and
//! layers), a call as consumer layers see it ([`ConsumerCall`]) and what comes back for it
//! ([`ConsumerAnswer`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connection::ClientConnection;
use super::request::{Addressed, EncodedRequest, Encoding};
use super::route::Route;
use crate::compress::CompressionPolicy;
use crate::config::ConsumerConfig;
use crate::context::CallContext;
use crate::layer::boxed::Boxed;
use crate::protocol::{Frame, Metadata, Status};
use crate::serialize::Serialization;
use crate::service::ServiceDescriptor;

/// The kind of method called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Unary,
    OneWay,
    Stream,
}

/// One call leaving a consumer, as its layers see it: which service and method, the metadata
/// that travels with it (layers may add to it), and its deadline. The arguments are already
/// serialized.
///
/// Layers are tower `Layer`s whose services take a `ConsumerCall` and answer a
/// [`ConsumerAnswer`]; see [`crate::layer`].
pub struct ConsumerCall {
    pub(crate) target: Arc<ServiceTarget>,
    pub(crate) method: usize,
    pub(crate) kind: CallKind,
    pub(crate) request: EncodedRequest,
    pub(crate) metadata: Metadata,
    pub(crate) deadline: Deadline,
}

impl ConsumerCall {
    /// The service key (`group/name:version`).
    pub fn service(&self) -> &str {
        &self.target.service
    }

    /// The method's name.
    pub fn method(&self) -> &'static str {
        self.target.methods[self.method].name
    }

    /// Whether the method is marked idempotent (retried on another provider after a
    /// connection failure).
    pub fn is_idempotent(&self) -> bool {
        self.target.methods[self.method].idempotent
    }

    /// Metadata sent with the request.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Metadata sent with the request, to add to (a trace id, a token).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// When the consumer stops waiting for the answer.
    pub fn deadline(&self) -> Instant {
        self.deadline.at
    }

    /// Size of the serialized (and maybe compressed) arguments.
    pub fn body_len(&self) -> usize {
        self.request.body.len()
    }
}

impl fmt::Debug for ConsumerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerCall")
            .field("service", &self.service())
            .field("method", &self.method())
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// What a provider answered to a [`ConsumerCall`]. Failures before an answer (no provider,
/// timeout, lost connection) are errors of the layered service instead.
pub struct ConsumerAnswer {
    pub(crate) peer: SocketAddr,
    pub(crate) outcome: Answered,
}

/// The answer's content, by kind of call.
pub(crate) enum Answered {
    /// The response frame of a unary call.
    Unary(Frame),
    /// A one-way request was queued on the connection.
    Sent,
    /// A stream opened: its connection, request id and where its frames arrive.
    StreamOpened(Arc<ClientConnection>, u64, mpsc::Receiver<Frame>),
    /// The provider refused to open the stream; the frame says why.
    StreamRefused(Frame),
}

impl ConsumerAnswer {
    /// The provider that answered.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The answer's status: `Ok` for a value, a sent one-way call or an opened stream,
    /// `AppError` for the method's own error, and so on.
    pub fn status(&self) -> Status {
        match &self.outcome {
            Answered::Unary(frame) | Answered::StreamRefused(frame) => {
                Status::from_u8(frame.header.status).unwrap_or(Status::Internal)
            }
            Answered::Sent | Answered::StreamOpened(..) => Status::Ok,
        }
    }
}

impl fmt::Debug for ConsumerAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerAnswer")
            .field("peer", &self.peer)
            .field("status", &self.status())
            .finish()
    }
}

/// One method's call settings, resolved against the consumer's defaults.
#[derive(Debug, Clone)]
pub(crate) struct MethodSettings {
    pub(crate) name: &'static str,
    pub(crate) id: u32,
    pub(crate) timeout: Duration,
    pub(crate) idempotent: bool,
    pub(crate) cluster: super::ClusterPolicy,
}

/// The calls of one service.
pub(crate) struct ServiceTarget {
    /// The service key as text (for errors and layers).
    pub(crate) service: Arc<str>,
    pub(crate) service_id: u64,
    pub(crate) route: Arc<Route>,
    pub(crate) methods: Vec<MethodSettings>,
    pub(crate) serialization: Serialization,
    pub(crate) compression: CompressionPolicy,
    /// Further attempts on other providers after a failure that allows one.
    pub(crate) retries: u32,
    /// When a provider that keeps failing calls is left out for a while.
    pub(crate) outlier: super::OutlierPolicy,
    /// Providers a forking call goes to at once.
    pub(crate) forks: u32,
    pub(crate) max_frame_size: usize,
    /// The client's layers, if any: calls then go through them.
    pub(crate) layers: Option<Boxed<ConsumerCall, ConsumerAnswer>>,
}

impl ServiceTarget {
    /// How this service's requests are encoded.
    pub(crate) fn encoding(&self) -> Encoding {
        Encoding {
            serialization: self.serialization,
            compression: self.compression,
            max_frame_size: self.max_frame_size,
            hash_arguments: self.route.needs_request_hash(),
        }
    }

    /// The ids a request frame of `method` carries.
    pub(crate) fn address(&self, method: &MethodSettings) -> Addressed {
        Addressed {
            service_id: self.service_id,
            method_id: method.id,
        }
    }

    /// When a call of `method` made now must be answered: its own timeout, or sooner if it is
    /// made while serving a call whose deadline is sooner (a handler's downstream calls never
    /// outlive the call that made them).
    pub(crate) fn deadline(&self, method: &MethodSettings) -> Deadline {
        let started = Instant::now();
        let own = started + method.timeout;
        let at = match CallContext::current_deadline() {
            Some(inherited) if inherited < own => inherited,
            _ => own,
        };
        Deadline { started, at }
    }
}

/// A call's deadline and when the call started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) started: Instant,
    pub(crate) at: Instant,
}

impl Deadline {
    /// The time the call was given, for errors.
    pub(crate) fn budget(&self) -> Duration {
        self.at.saturating_duration_since(self.started)
    }
}

/// Resolves the settings of every method of `descriptor` against the consumer's
/// configuration. A method's cluster policy is the configuration's for that method
/// (`Cluster.<method>`), else the trait's (`#[rmif(cluster = …)]`), else the consumer's.
pub(crate) fn method_settings(
    descriptor: &'static ServiceDescriptor,
    config: &ConsumerConfig,
) -> Vec<MethodSettings> {
    descriptor
        .methods
        .iter()
        .map(|m| MethodSettings {
            name: m.name,
            id: m.id,
            timeout: m
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(config.timeout),
            idempotent: m.idempotent,
            cluster: config
                .method_cluster
                .get(m.name)
                .copied()
                .or(m.cluster)
                .unwrap_or(config.cluster),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterPolicy;
    use crate::service::MethodDescriptor;

    const fn method(name: &'static str, cluster: Option<ClusterPolicy>) -> MethodDescriptor {
        MethodDescriptor {
            name,
            id: 0,
            timeout_ms: None,
            idempotent: true,
            oneway: false,
            streaming: false,
            cluster,
            failsafe: false,
        }
    }

    static SERVICE: ServiceDescriptor = ServiceDescriptor {
        name: "s",
        group: "",
        version: "",
        methods: &[
            method("plain", None),
            method("marked", Some(ClusterPolicy::Forking)),
            method("configured", Some(ClusterPolicy::Forking)),
        ],
    };

    #[test]
    fn a_methods_cluster_policy_comes_from_its_key_then_its_attribute_then_the_consumer() {
        let mut config = ConsumerConfig {
            cluster: ClusterPolicy::Failfast,
            ..ConsumerConfig::default()
        };
        config
            .method_cluster
            .insert("configured".to_owned(), ClusterPolicy::Failover);
        let clusters: Vec<_> = method_settings(&SERVICE, &config)
            .iter()
            .map(|m| m.cluster)
            .collect();
        assert_eq!(
            clusters,
            [
                ClusterPolicy::Failfast,
                ClusterPolicy::Forking,
                ClusterPolicy::Failover
            ]
        );
    }
}
