//! Bad input from a peer: each case gets a typed error answer where the request id is known,
//! otherwise its connection is closed; every other connection keeps being served.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rmif_core::protocol::{FrameHeader, FrameKind, OutFrame, Status};
use rmif_core::{ProviderConfig, Serialization, ServerHandle};

use crate::raw::{RawPeer, msgpack, request};
use crate::support::*;

fn strict_provider() -> ProviderConfig {
    ProviderConfig {
        tick: Duration::from_millis(50),
        again: 3,
        max_frame_size: 64 * 1024,
        ..ProviderConfig::loopback()
    }
}

/// Runs `misbehave` on a fresh raw connection while a well-behaved consumer holds another, and
/// checks that the consumer is still served afterwards.
async fn with_bystander<F, Fut>(misbehave: F)
where
    F: FnOnce(ServerHandle) -> Fut,
    Fut: Future<Output = ServerHandle>,
{
    let (server, _) = start_provider(strict_provider()).await;
    let bystander = consumer(&[&server]);
    assert_eq!(bystander.add(1, 2).await.unwrap(), 3);
    let server = misbehave(server).await;
    assert_eq!(
        bystander.add(20, 22).await.unwrap(),
        42,
        "the well-behaved consumer is still served"
    );
    assert_eq!(
        server.connections(),
        1,
        "only the offending connection was closed"
    );
    server.shutdown_within(Duration::from_secs(1)).await;
}

async fn expect_closed_after(bytes: Vec<u8>) {
    with_bystander(|server| async move {
        let mut peer = RawPeer::connect(server.local_addr()).await;
        peer.send_bytes(&bytes).await;
        peer.expect_closed().await;
        server
    })
    .await;
}

fn header_bytes(magic: &[u8; 2], version: u8, kind: u8) -> Vec<u8> {
    let mut frame = BytesMut::new();
    frame.put_u32(16);
    frame.put_slice(magic);
    frame.put_u8(version);
    frame.put_u8(kind);
    frame.put_slice(&[0; 4]);
    frame.put_u64(1);
    frame.to_vec()
}

#[tokio::test]
async fn garbage_bytes_close_the_connection() {
    expect_closed_after(b"GET / HTTP/1.1\r\nHost: provider\r\n\r\n".to_vec()).await;
}

#[tokio::test]
async fn wrong_magic_closes_the_connection() {
    expect_closed_after(header_bytes(b"XX", 1, 6)).await;
}

#[tokio::test]
async fn an_unsupported_version_closes_the_connection() {
    expect_closed_after(header_bytes(b"RM", 2, 6)).await;
}

#[tokio::test]
async fn an_unknown_frame_kind_closes_the_connection() {
    expect_closed_after(header_bytes(b"RM", 1, 77)).await;
}

#[tokio::test]
async fn a_length_prefix_above_the_maximum_closes_the_connection_at_once() {
    // Only the prefix: the provider must not wait for 4 GiB to arrive.
    expect_closed_after(vec![0xff, 0xff, 0xff, 0xff]).await;
}

#[tokio::test]
async fn a_frame_too_short_for_its_header_closes_the_connection() {
    let mut bytes = header_bytes(b"RM", 1, 1);
    bytes[3] = 8; // length 8 < 16-byte header
    expect_closed_after(bytes).await;
}

#[tokio::test]
async fn a_request_without_its_extension_closes_the_connection() {
    // A request frame must carry 16 bytes of request extension after the header.
    expect_closed_after(header_bytes(b"RM", 1, 1)).await;
}

#[tokio::test]
async fn truncated_metadata_closes_the_connection() {
    let mut frame = BytesMut::new();
    OutFrame::new(FrameHeader::new(FrameKind::Heartbeat, 0), b"").encode(&mut frame);
    frame[3] = 19; // three more bytes than the header
    frame[11] = 1; // metadata flag
    frame.put_slice(&[0, 5, 9]); // says 5 entries, has none
    expect_closed_after(frame.to_vec()).await;
}

#[tokio::test]
async fn a_consumer_sending_provider_frames_is_disconnected() {
    let mut frame = BytesMut::new();
    OutFrame::new(FrameHeader::new(FrameKind::Response, 3), b"").encode(&mut frame);
    expect_closed_after(frame.to_vec()).await;
}

#[tokio::test]
async fn a_truncated_frame_closes_the_connection() {
    with_bystander(|server| async move {
        let mut peer = RawPeer::connect(server.local_addr()).await;
        let body = msgpack(&(1u64, 2u64));
        let mut frame = BytesMut::new();
        request(9, "add", 1, 0, &body).encode(&mut frame);
        peer.send_bytes(&frame[..frame.len() - 3]).await;
        peer.shutdown_write().await;
        peer.expect_closed().await;
        server
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_sends_nothing_is_closed_after_missed_heartbeats() {
    with_bystander(|server| async move {
        let stream = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncReadExt;
            let mut stream = stream;
            // The provider sends heartbeats, gets no answer, and hangs up.
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a silent peer was not disconnected");
        server
    })
    .await;
}

/// Sends one request and returns the status and message of its answer.
async fn answer_to(frame: OutFrame<'_>) -> (Status, String) {
    let (server, _) = start_provider(strict_provider()).await;
    let bystander = consumer(&[&server]);
    let mut peer = RawPeer::connect(server.local_addr()).await;
    let id = frame.header.request_id;
    peer.send(frame).await;
    let answer = peer
        .next_answer()
        .await
        .expect("a typed answer, not a closed connection");
    assert_eq!(answer.header.kind, FrameKind::Response);
    assert_eq!(answer.header.request_id, id);
    // The connection stays usable after a typed error.
    peer.send(request(id + 1, "add", 1, 0, &msgpack(&(2u64, 2u64))))
        .await;
    let ok = peer.next_answer().await.expect("an answer");
    assert_eq!((ok.header.status, &ok.body[..]), (0, &[4u8][..]));
    assert_eq!(bystander.add(1, 1).await.unwrap(), 2);
    server.shutdown_within(Duration::from_secs(1)).await;
    (
        Status::from_u8(answer.header.status).expect("a known status"),
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

#[tokio::test]
async fn an_unknown_serialization_id_is_a_bad_request() {
    let body = msgpack(&(1u64, 2u64));
    let (status, message) = answer_to(request(5, "add", 9, 0, &body)).await;
    assert_eq!(status, Status::BadRequest);
    assert!(
        message.contains("unsupported serialization id 9"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_compression_id_is_a_bad_request() {
    let body = msgpack(&(1u64, 2u64));
    let (status, message) = answer_to(request(5, "add", 1, 7, &body)).await;
    assert_eq!(status, Status::BadRequest);
    assert!(message.contains("unknown compression id 7"), "{message}");
}

#[tokio::test]
async fn an_lz4_body_that_expands_past_the_cap_is_a_bad_request() {
    let mut body = BytesMut::new();
    let policy = rmif_core::CompressionPolicy {
        algorithm: rmif_core::Compression::Lz4,
        threshold: 0,
    };
    policy.compress_into(&vec![0u8; 1 << 20], &mut body);
    let (status, message) = answer_to(request(5, "echo", 1, 1, &body)).await;
    assert_eq!(status, Status::BadRequest);
    assert!(message.contains("above the cap"), "{message}");
}

#[tokio::test]
async fn an_unknown_service_gets_a_typed_answer() {
    let body = msgpack(&(1u64, 2u64));
    let mut frame = request(5, "add", 1, 0, &body);
    frame.request.as_mut().unwrap().service_id = 42;
    let (status, message) = answer_to(frame).await;
    assert_eq!(status, Status::UnknownService);
    assert!(
        message.contains("test.Calculator"),
        "lists what is served: {message}"
    );
}

#[tokio::test]
async fn an_unknown_method_gets_a_typed_answer() {
    let body = msgpack(&(1u64, 2u64));
    let (status, message) = answer_to(request(5, "multiply", 1, 0, &body)).await;
    assert_eq!(status, Status::UnknownMethod);
    assert!(message.contains("test.Calculator"), "{message}");
}

#[tokio::test]
async fn arguments_that_do_not_deserialize_are_a_bad_request() {
    let body = msgpack(&"not two numbers");
    let (status, message) = answer_to(request(5, "add", 1, 0, &body)).await;
    assert_eq!(status, Status::BadRequest);
    assert!(message.contains("do not decode"), "{message}");
    let (status, _) = answer_to(request(6, "add", Serialization::Json.id(), 0, b"{")).await;
    assert_eq!(status, Status::BadRequest);
}
