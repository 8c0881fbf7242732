//! A hand-driven peer that speaks (or deliberately breaks) the wire protocol.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rmif_core::protocol::{Frame, FrameCodec, FrameHeader, FrameKind, OutFrame, RequestHead, ids};
use rmif_core::{Serialization, ServiceKey};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub struct RawPeer {
    framed: Framed<TcpStream, FrameCodec>,
}

impl RawPeer {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawPeer {
            framed: Framed::new(stream, FrameCodec::default()),
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, frame: OutFrame<'_>) {
        self.framed.send(frame).await.expect("send frame");
    }

    pub async fn shutdown_write(&mut self) {
        self.framed.get_mut().shutdown().await.expect("shutdown");
    }

    /// The next frame that is not a heartbeat; `None` once the provider closed the connection.
    pub async fn next_answer(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let next = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .expect("the provider neither answered nor closed within 5 s");
            match next {
                Some(Ok(frame)) if frame.header.kind == FrameKind::Heartbeat => {
                    let ack = FrameHeader::new(FrameKind::HeartbeatAck, frame.header.request_id);
                    let _ = self.framed.send(OutFrame::new(ack, b"")).await;
                }
                Some(Ok(frame)) if frame.header.kind == FrameKind::HeartbeatAck => {}
                Some(Ok(frame)) => return Some(frame),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Asserts that the provider closes the connection (without answering anything).
    pub async fn expect_closed(&mut self) {
        if let Some(frame) = self.next_answer().await {
            panic!("expected the connection to close, got {frame:?}");
        }
    }
}

/// A request for `method` of the test calculator with `body` as its (raw) arguments.
pub fn request<'a>(
    id: u64,
    method: &str,
    serialization: u8,
    compression: u8,
    body: &'a [u8],
) -> OutFrame<'a> {
    OutFrame {
        header: FrameHeader {
            kind: FrameKind::Request,
            serialization,
            compression,
            status: 0,
            request_id: id,
        },
        request: Some(RequestHead {
            service_id: ServiceKey::new("test.Calculator").id(),
            method_id: ids::method_id(method),
            timeout_ms: 5000,
        }),
        metadata: None,
        body,
    }
}

/// msgpack of `value`.
pub fn msgpack<T: serde::Serialize>(value: &T) -> Bytes {
    let mut buf = BytesMut::new();
    Serialization::MsgPack.encode(value, &mut buf).unwrap();
    buf.freeze()
}
