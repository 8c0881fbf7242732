//! One attempt of a call on one provider's connection: send the request frame, wait (until the
//! deadline) for the answer, and cancel the call on the provider if the caller stops waiting.

use tokio::sync::{mpsc, oneshot};

use super::answer::refusal_error;
use super::call::{Answered, CallKind, ConsumerAnswer, Deadline, MethodSettings, ServiceTarget};
use super::connection::{ClientConnection, Pending};
use super::endpoint::Endpoint;
use super::request::EncodedRequest;
use crate::Error;
use crate::protocol::{INITIAL_STREAM_WINDOW, Metadata, Status};

/// Everything one attempt needs; the same for every attempt of a call.
pub(crate) struct Attempt<'a> {
    pub(crate) target: &'a ServiceTarget,
    pub(crate) method: &'a MethodSettings,
    pub(crate) request: &'a EncodedRequest,
    pub(crate) metadata: &'a Metadata,
    pub(crate) deadline: Deadline,
}

impl Attempt<'_> {
    /// Makes the attempt on `endpoint`.
    pub(crate) async fn on(
        &self,
        kind: CallKind,
        endpoint: &Endpoint,
    ) -> Result<ConsumerAnswer, Error> {
        let outcome = match kind {
            CallKind::Unary => self.unary(endpoint).await?,
            CallKind::OneWay => self.oneway(endpoint).await?,
            CallKind::Stream => self.stream(endpoint).await?,
        };
        Ok(ConsumerAnswer {
            peer: endpoint.addr(),
            outcome,
        })
    }

    async fn unary(&self, endpoint: &Endpoint) -> Result<Answered, Error> {
        let connection = endpoint.connection(self.deadline.at).await?;
        let _in_flight = endpoint.begin_call();
        let sent_at = tokio::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut waiting = self
            .send_request(endpoint, &connection, Pending::Unary(tx))
            .await?;
        match tokio::time::timeout_at(self.deadline.at, rx).await {
            Ok(Ok(frame)) => {
                waiting.disarm();
                endpoint.observe_latency(sent_at);
                if frame.header.status == Status::DeadlineExceeded as u8 {
                    // The provider gave up a moment before this side would have.
                    return Err(self.timeout());
                }
                match refusal_error(&frame, endpoint.addr()) {
                    Some(refused) => Err(refused),
                    None => Ok(Answered::Unary(frame)),
                }
            }
            Ok(Err(_)) => {
                waiting.disarm();
                Err(connection.lost())
            }
            Err(_) => Err(self.timeout()),
        }
    }

    async fn oneway(&self, endpoint: &Endpoint) -> Result<Answered, Error> {
        let connection = endpoint.connection(self.deadline.at).await?;
        let id = connection.next_request_id();
        let frame = self.request.frame(
            self.target.serialization,
            self.target.address(self.method),
            self.metadata,
            id,
            self.deadline.at,
        );
        if connection.send(&frame, endpoint.in_flight() == 0).await {
            Ok(Answered::Sent)
        } else {
            Err(connection.not_sent())
        }
    }

    async fn stream(&self, endpoint: &Endpoint) -> Result<Answered, Error> {
        let connection = endpoint.connection(self.deadline.at).await?;
        // Room for the full window plus the opening response and the end.
        let (tx, mut rx) = mpsc::channel(INITIAL_STREAM_WINDOW as usize + 2);
        let mut waiting = self
            .send_request(endpoint, &connection, Pending::Stream(tx))
            .await?;
        match tokio::time::timeout_at(self.deadline.at, rx.recv()).await {
            Ok(Some(frame)) if frame.header.status == Status::Ok as u8 => {
                waiting.disarm();
                Ok(Answered::StreamOpened(connection.clone(), waiting.id, rx))
            }
            Ok(Some(frame)) => {
                waiting.disarm();
                match refusal_error(&frame, endpoint.addr()) {
                    Some(refused) => Err(refused),
                    None => Ok(Answered::StreamRefused(frame)),
                }
            }
            Ok(None) => {
                waiting.disarm();
                Err(connection.lost())
            }
            Err(_) => Err(self.timeout()),
        }
    }

    /// Registers where the answers to a new request id go, then sends the request frame; the
    /// returned guard cancels the call on the provider if the caller stops waiting.
    async fn send_request<'c>(
        &self,
        endpoint: &Endpoint,
        connection: &'c ClientConnection,
        pending: Pending,
    ) -> Result<Waiting<'c>, Error> {
        let id = connection.next_request_id();
        if connection.register(id, pending).is_err() {
            return Err(connection.not_sent());
        }
        let mut waiting = Waiting::new(connection, id);
        let frame = self.request.frame(
            self.target.serialization,
            self.target.address(self.method),
            self.metadata,
            id,
            self.deadline.at,
        );
        if !connection.send(&frame, endpoint.in_flight() <= 1).await {
            waiting.disarm();
            connection.forget(id);
            return Err(connection.not_sent());
        }
        Ok(waiting)
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            service: self.target.service.to_string(),
            method: self.method.name.to_owned(),
            timeout_ms: self.deadline.budget().as_millis() as u64,
        }
    }
}

/// Cancels a call on its provider if the waiting future is dropped (the caller gave up or timed
/// out) before the answer arrived.
struct Waiting<'a> {
    connection: &'a ClientConnection,
    id: u64,
    armed: bool,
}

impl<'a> Waiting<'a> {
    fn new(connection: &'a ClientConnection, id: u64) -> Self {
        Waiting {
            connection,
            id,
            armed: true,
        }
    }

    /// The call was answered (or never sent): nothing to cancel.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.connection.cancel(self.id);
        }
    }
}
