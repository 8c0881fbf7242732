//! Golden bytes: the frame layout documented in docs/PROTOCOL.md, pinned.

use bytes::BytesMut;
use rmif_core::protocol::{
    Frame, FrameCodec, FrameHeader, FrameKind, Metadata, OutFrame, ProtocolError, RequestHead,
    Status, ids,
};
use tokio_util::codec::{Decoder, Encoder};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn encode(frame: OutFrame<'_>) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::default().encode(frame, &mut buf).unwrap();
    buf
}

fn decode_all(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = FrameCodec::default()
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    assert!(buf.is_empty());
    frame
}

#[test]
fn request_frame_layout() {
    let mut metadata = Metadata::new();
    metadata.insert("k", "v").unwrap();
    let frame = OutFrame {
        header: FrameHeader {
            kind: FrameKind::Request,
            serialization: 1,
            compression: 0,
            status: 0,
            request_id: 7,
        },
        request: Some(RequestHead {
            service_id: 0x0102_0304_0506_0708,
            method_id: 0x0a0b_0c0d,
            timeout_ms: 1000,
        }),
        metadata: Some(&metadata),
        body: &[0x92, 0x02, 0x03],
    };
    let bytes = encode(frame);
    assert_eq!(
        hex(&bytes),
        "00 00 00 2a 52 4d 01 01 01 00 00 01 00 00 00 00 00 00 00 07 \
         01 02 03 04 05 06 07 08 0a 0b 0c 0d 00 00 03 e8 \
         00 01 01 6b 00 01 76 92 02 03"
    );
    let decoded = decode_all(&bytes);
    assert_eq!(decoded.header, frame.header);
    assert_eq!(decoded.request, frame.request);
    assert_eq!(decoded.metadata.get("k"), Some("v"));
    assert_eq!(&decoded.body[..], &[0x92, 0x02, 0x03]);
}

#[test]
fn response_frame_layout() {
    let frame = OutFrame::new(
        FrameHeader {
            kind: FrameKind::Response,
            serialization: 1,
            compression: 0,
            status: Status::AppError as u8,
            request_id: 7,
        },
        &[0xa1, 0x78],
    );
    let bytes = encode(frame);
    assert_eq!(
        hex(&bytes),
        "00 00 00 12 52 4d 01 02 01 00 01 00 00 00 00 00 00 00 00 07 a1 78"
    );
    assert_eq!(decode_all(&bytes).header, frame.header);
}

#[test]
fn control_frame_layouts() {
    let heartbeat = encode(OutFrame::new(
        FrameHeader::new(FrameKind::Heartbeat, 0),
        b"",
    ));
    assert_eq!(
        hex(&heartbeat),
        "00 00 00 10 52 4d 01 06 00 00 00 00 00 00 00 00 00 00 00 00"
    );
    let credit = encode(OutFrame::new(
        FrameHeader::new(FrameKind::StreamCredit, 3),
        &32u32.to_be_bytes(),
    ));
    assert_eq!(
        hex(&credit),
        "00 00 00 14 52 4d 01 09 00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 20"
    );
}

#[test]
fn kind_and_status_values_are_pinned() {
    let kinds = [
        (FrameKind::Request, 1),
        (FrameKind::Response, 2),
        (FrameKind::StreamItem, 3),
        (FrameKind::StreamEnd, 4),
        (FrameKind::Cancel, 5),
        (FrameKind::Heartbeat, 6),
        (FrameKind::HeartbeatAck, 7),
        (FrameKind::GoAway, 8),
        (FrameKind::StreamCredit, 9),
    ];
    for (kind, value) in kinds {
        assert_eq!(kind as u8, value);
        assert_eq!(FrameKind::from_u8(value), Some(kind));
    }
    for value in 0..=9u8 {
        assert_eq!(Status::from_u8(value).map(|s| s as u8), Some(value));
    }
    assert_eq!(Status::Rejected as u8, 9);
    assert_eq!(Status::from_u8(10), None);
}

#[test]
fn ids_are_fnv1a_of_the_names() {
    assert_eq!(ids::method_id("add"), 0x3b39_1274);
    assert_eq!(
        ids::service_id("test.Calculator"),
        rmif_core::ServiceKey::new("test.Calculator").id()
    );
    assert_eq!(
        rmif_core::ServiceKey::new("Ledger")
            .with_group("billing")
            .with_version("2.0")
            .to_string(),
        "billing/Ledger:2.0"
    );
}

#[test]
fn frames_arriving_a_byte_at_a_time_decode_once_complete() {
    let bytes = encode(OutFrame::new(
        FrameHeader::new(FrameKind::Cancel, 99),
        b"xyz",
    ));
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for (i, byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let decoded = codec.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert!(decoded.is_none(), "decoded early at byte {i}");
        } else {
            let frame = decoded.expect("decoded at the last byte");
            assert_eq!(frame.header.request_id, 99);
            assert_eq!(&frame.body[..], b"xyz");
        }
    }
}

#[test]
fn decoder_errors_name_the_problem() {
    let mut codec = FrameCodec::new(1024);
    let mut too_large = BytesMut::from(&[0u8, 0, 8, 0][..]);
    assert!(matches!(
        codec.decode(&mut too_large),
        Err(ProtocolError::FrameTooLarge {
            len: 2048,
            max: 1024
        })
    ));
    let mut garbage = BytesMut::from(&b"GET / HTTP/1.1"[..]);
    let err = codec.decode(&mut garbage).unwrap_err();
    assert!(err.to_string().contains("does not speak rmif"), "{err}");
    let mut partial = BytesMut::from(
        &encode(OutFrame::new(
            FrameHeader::new(FrameKind::Heartbeat, 0),
            b"",
        ))[..10],
    );
    assert!(matches!(
        codec.decode_eof(&mut partial),
        Err(ProtocolError::UnexpectedEof { buffered: 10 })
    ));
}

#[tokio::test]
async fn byte_vectors_travel_as_msgpack_bin() {
    use crate::raw::{RawPeer, request};
    let (server, _) = crate::support::start_provider(rmif_core::ProviderConfig::loopback()).await;
    let mut peer = RawPeer::connect(server.local_addr()).await;
    // echo(vec![1, 2, 3]): an array of one bin.
    peer.send(request(1, "echo", 1, 0, &[0x91, 0xc4, 0x03, 1, 2, 3]))
        .await;
    let answer = peer.next_answer().await.expect("an answer");
    assert_eq!(answer.header.status, Status::Ok as u8);
    assert_eq!(hex(&answer.body), "c4 03 01 02 03");
    server.shutdown().await;
}
