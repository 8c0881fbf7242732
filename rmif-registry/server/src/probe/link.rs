//! One long-lived connection to one provider address, on which a probe is the protocol's
//! heartbeat and its answer, exactly as a consumer's connection sends them.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmif_core::protocol::{FrameCodec, FrameHeader, FrameKind, OutFrame, ProtocolError};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Largest frame a probe reads: a provider only ever sends it empty liveness frames, so a
/// larger length prefix is garbage, not a frame worth buffering.
const MAX_PROBE_FRAME: usize = 64 * 1024;

/// Why one attempt failed, and whether a fresh connection deserves one more attempt within
/// the same probe.
struct Failure {
    reason: String,
    /// The kept connection was closed or broken (a provider may close a connection it found
    /// idle, or one it is going away from); a new one may well work.
    stale: bool,
}

/// The probing end of one provider address.
pub(super) struct ProbeLink {
    addr: SocketAddr,
    conn: Option<Framed<TcpStream, FrameCodec>>,
    next_id: u64,
}

impl ProbeLink {
    /// A link that connects on its first probe.
    pub(super) fn new(addr: SocketAddr) -> Self {
        ProbeLink {
            addr,
            conn: None,
            next_id: 0,
        }
    }

    /// One probe: a heartbeat, answered within `limit` (connecting first if needed). On
    /// failure the connection is dropped and the next probe connects again.
    pub(super) async fn probe(&mut self, limit: Duration) -> Result<(), String> {
        let outcome = tokio::time::timeout(limit, async {
            let reused = self.conn.is_some();
            match self.heartbeat().await {
                Err(failure) if reused && failure.stale => {
                    self.conn = None;
                    self.heartbeat().await
                }
                other => other,
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => {
                self.conn = None;
                Err(failure.reason)
            }
            Err(_) => {
                self.conn = None;
                Err(format!("no answer within {} ms", limit.as_millis()))
            }
        }
    }

    async fn heartbeat(&mut self) -> Result<(), Failure> {
        let fail = |reason: String, stale: bool| Failure { reason, stale };
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| fail(format!("cannot connect: {e}"), false))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(Framed::new(stream, FrameCodec::new(MAX_PROBE_FRAME)));
        }
        let conn = self.conn.as_mut().expect("connected above");
        self.next_id += 1;
        let id = self.next_id;
        conn.send(OutFrame::new(
            FrameHeader::new(FrameKind::Heartbeat, id),
            b"",
        ))
        .await
        .map_err(|e| fail(format!("cannot send a heartbeat: {e}"), true))?;
        loop {
            let frame = match conn.next().await {
                None => return Err(fail("the connection was closed".to_owned(), true)),
                Some(Err(ProtocolError::Io(e))) => {
                    return Err(fail(format!("connection failed: {e}"), true));
                }
                Some(Err(e)) => return Err(fail(format!("not an rmif answer: {e}"), false)),
                Some(Ok(frame)) => frame,
            };
            match frame.header.kind {
                FrameKind::HeartbeatAck if frame.header.request_id == id => return Ok(()),
                // A late answer to a probe that timed out on this connection.
                FrameKind::HeartbeatAck => {}
                // The provider's own liveness check of an idle connection.
                FrameKind::Heartbeat => {
                    let ack = FrameHeader::new(FrameKind::HeartbeatAck, frame.header.request_id);
                    conn.send(OutFrame::new(ack, b""))
                        .await
                        .map_err(|e| fail(format!("cannot answer a heartbeat: {e}"), true))?;
                }
                FrameKind::GoAway => {
                    return Err(fail("the provider is going away".to_owned(), true));
                }
                other => {
                    return Err(fail(
                        format!("unexpected {other:?} frame instead of a heartbeat answer"),
                        false,
                    ));
                }
            }
        }
    }
}
