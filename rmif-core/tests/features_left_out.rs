//! rmif-core built without some of its optional features, as a provider and consumer with static
//! addresses might build it: calls still work in what the build has, and a request in a format
//! or compression it leaves out gets a BadRequest answer that names the missing feature, on a
//! connection that goes on serving.
//!
//! CI runs this with `--no-default-features`; a build with both `json` and `lz4` has nothing
//! here to test.
#![cfg(not(all(feature = "json", feature = "lz4")))]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmif_core::protocol::{Frame, FrameCodec, FrameKind, OutFrame, RequestHead, Status, ids};
use rmif_core::{
    Client, ConsumerConfig, ProviderConfig, Serialization, Server, ServerHandle, ServiceKey,
};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

#[rmif_core::service(name = "left_out.Adder")]
pub trait Adder {
    async fn add(&self, a: u64, b: u64) -> Result<u64, AddError>;
}

struct Local;

impl Adder for Local {
    async fn add(&self, a: u64, b: u64) -> Result<u64, AddError> {
        Ok(a + b)
    }
}

async fn provider() -> ServerHandle {
    Server::builder(ProviderConfig::loopback())
        .add_service(AdderProvider::new(Local))
        .serve()
        .await
        .expect("a provider on loopback")
}

/// A request for `add` with `body` as its raw arguments.
fn request(id: u64, serialization: u8, compression: u8, body: &[u8]) -> OutFrame<'_> {
    let mut header = rmif_core::protocol::FrameHeader::new(FrameKind::Request, id);
    header.serialization = serialization;
    header.compression = compression;
    OutFrame {
        header,
        request: Some(RequestHead {
            service_id: ServiceKey::new("left_out.Adder").id(),
            method_id: ids::method_id("add"),
            timeout_ms: 5000,
        }),
        metadata: None,
        body,
    }
}

/// The next frame other than a heartbeat.
async fn next_answer(peer: &mut Framed<TcpStream, FrameCodec>) -> Frame {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), peer.next())
            .await
            .expect("an answer within 5 s")
            .expect("an answer, not a closed connection")
            .expect("a well-formed frame");
        if !matches!(
            frame.header.kind,
            FrameKind::Heartbeat | FrameKind::HeartbeatAck
        ) {
            return frame;
        }
    }
}

/// Sends `frame` on a raw connection and returns the status and message of its answer, after
/// checking that the same connection then still serves a msgpack call.
async fn answer_to(frame: OutFrame<'_>) -> (Status, String) {
    let server = provider().await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut peer = Framed::new(stream, FrameCodec::default());
    peer.send(frame).await.unwrap();
    let answer = next_answer(&mut peer).await;
    assert_eq!(answer.header.kind, FrameKind::Response);

    let mut body = bytes::BytesMut::new();
    Serialization::MsgPack
        .encode(&(2u64, 2u64), &mut body)
        .unwrap();
    peer.send(request(99, Serialization::MsgPack.id(), 0, &body))
        .await
        .unwrap();
    let ok = next_answer(&mut peer).await;
    assert_eq!((ok.header.request_id, ok.header.status), (99, 0));
    assert_eq!(&ok.body[..], &[4u8][..], "msgpack 4");

    drop(peer);
    server.shutdown().await;
    (
        Status::from_u8(answer.header.status).expect("a known status"),
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

#[tokio::test]
async fn a_static_address_consumer_calls_with_what_the_build_has() {
    let server = provider().await;
    let config = ConsumerConfig {
        static_providers: vec![server.local_addr()],
        ..ConsumerConfig::default()
    };
    let adder: AdderConsumer = Client::with_static_providers(config).stub();
    assert_eq!(adder.add(40, 2).await.unwrap(), 42);
    server.shutdown().await;
}

#[cfg(not(feature = "json"))]
#[tokio::test]
async fn a_json_request_is_a_bad_request_naming_the_json_feature() {
    let (status, message) = answer_to(request(5, 2, 0, b"[1,2]")).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(
        message,
        "serialization id 2 is json, and this provider was built without json (rmif-core's \
         `json` feature): send msgpack (1), or build the provider with the feature"
    );
}

#[cfg(not(feature = "lz4"))]
#[tokio::test]
async fn an_lz4_body_is_a_bad_request_naming_the_lz4_feature() {
    let (status, message) = answer_to(request(5, 1, 1, &[0, 0, 0, 3, 0x30, 1, 2, 3])).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(
        message,
        "compression id 1 is lz4, which the receiver was built without (rmif-core's `lz4` \
         feature): set Compression=none on the sender, or build the receiver with the feature"
    );
}
