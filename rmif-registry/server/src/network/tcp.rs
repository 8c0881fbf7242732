//! The members' peer network over TCP: one outgoing connection per peer carrying
//! length-prefixed frames, and a listener for the connections of the others. A frame is a Raft
//! message (protobuf), a batch of session heartbeats a follower forwards to the leader, or a
//! member's notice that it lost its storage.
//!
//! A full outbox drops rather than blocks, and a broken connection is reported to raft-rs as
//! "unreachable" so that it stops pipelining to that peer. Each outbox also tells the operator
//! when its peer becomes unreachable (the connection lost or refused, or the peer silent) and
//! when it is back, once per change ([`super::reachability`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::reachability::{Heard, PeerWatch};
use super::{INBOUND_CAPACITY, PeerEvent, PeerInbound, PeerMessage, PeerNetwork, Peers};

/// First bytes of every peer connection, followed by the sender's id as a u64.
const HELLO: &[u8; 8] = b"RMIFPEER";
/// Largest peer frame: a snapshot of the whole tree travels in one.
const MAX_PEER_FRAME: usize = 1 << 30;
/// Messages queued for one peer before new ones are dropped.
const OUTBOX_CAPACITY: usize = 4096;
/// Messages written per batch.
const BATCH: usize = 256;

/// Frame tag: a protobuf Raft message follows.
const TAG_RAFT: u8 = 0;
/// Frame tag: a count (u32) and that many session ids (u64) follow.
const TAG_TOUCH: u8 = 1;
/// Frame tag: the sender restarted with empty storage (nothing follows).
const TAG_LOST_STATE: u8 = 2;

/// The frame that carries `message` (its tag, then its body).
fn encode(message: &PeerMessage) -> Option<Bytes> {
    match message {
        PeerMessage::Raft(message) => {
            let mut bytes = vec![TAG_RAFT];
            match message.write_to_writer(&mut bytes) {
                Ok(()) => Some(Bytes::from(bytes)),
                Err(error) => {
                    tracing::error!(%error, "cannot encode a raft message");
                    None
                }
            }
        }
        PeerMessage::Touch(sessions) => {
            let mut bytes = BytesMut::with_capacity(5 + 8 * sessions.len());
            bytes.put_u8(TAG_TOUCH);
            bytes.put_u32(sessions.len() as u32);
            for session in sessions {
                bytes.put_u64(*session);
            }
            Some(bytes.freeze())
        }
        PeerMessage::LostState => Some(Bytes::from_static(&[TAG_LOST_STATE])),
    }
}

/// The sending side of the TCP network: an outbox per peer, each drained by a task that keeps
/// a connection to that peer.
pub struct TcpNetwork {
    outboxes: HashMap<u64, mpsc::Sender<PeerMessage>>,
    events: mpsc::UnboundedSender<PeerEvent>,
}

impl TcpNetwork {
    /// Starts an outbox per peer (every member of `peers` but `me`) and the listener for
    /// inbound connections. A peer that sent nothing for `silence` after being sent something
    /// is logged as unreachable (it stopped answering).
    pub fn start(
        me: u64,
        listener: TcpListener,
        peers: &HashMap<u64, SocketAddr>,
        silence: Duration,
        shutdown: CancellationToken,
    ) -> Peers {
        let heard = Heard::new(peers.keys().copied());
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut outboxes = HashMap::new();
        for (&id, &addr) in peers.iter().filter(|(id, _)| **id != me) {
            let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
            outboxes.insert(id, tx);
            let link = Link {
                me,
                to: id,
                addr,
                heard: heard.clone(),
                silence,
            };
            tokio::spawn(run_outbox(link, rx, events_tx.clone(), shutdown.clone()));
        }
        let members: Vec<u64> = peers.keys().copied().collect();
        tokio::spawn(accept(listener, members, heard, inbound_tx, shutdown));
        Peers {
            network: Box::new(TcpNetwork {
                outboxes,
                events: events_tx,
            }),
            inbound,
            events,
        }
    }
}

impl PeerNetwork for TcpNetwork {
    fn send(&self, to: u64, message: PeerMessage) {
        let Some(outbox) = self.outboxes.get(&to) else {
            tracing::warn!(to, "message for an unknown member dropped");
            return;
        };
        let is_snapshot = message.is_snapshot();
        if outbox.try_send(message).is_err() {
            let _ = self.events.send(PeerEvent::Unreachable(to));
            if is_snapshot {
                let _ = self.events.send(PeerEvent::SnapshotSent(to, false));
            }
        }
    }
}

/// One outbox's peer, and what it needs to judge whether the peer answers.
struct Link {
    me: u64,
    to: u64,
    addr: SocketAddr,
    heard: Heard,
    silence: Duration,
}

async fn run_outbox(
    link: Link,
    mut outbox: mpsc::Receiver<PeerMessage>,
    events: mpsc::UnboundedSender<PeerEvent>,
    shutdown: CancellationToken,
) {
    let Link {
        me,
        to,
        addr,
        heard,
        silence,
    } = link;
    let mut watch = PeerWatch::new(to, addr, heard, silence);
    let mut backoff = Duration::from_millis(20);
    loop {
        let connected = tokio::select! {
            connected = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)) => connected,
            _ = shutdown.cancelled() => return,
        };
        let failure = match connected {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(format!("cannot connect: {error}")),
            Err(_) => Err("cannot connect: no answer within 1 s".to_owned()),
        };
        let stream = match failure {
            Ok(stream) => stream,
            Err(cause) => {
                watch.failed(&cause);
                // Whatever waited for this peer is stale by the time it could be delivered.
                while let Ok(outgoing) = outbox.try_recv() {
                    if outgoing.is_snapshot() {
                        let _ = events.send(PeerEvent::SnapshotSent(to, false));
                    }
                }
                let _ = events.send(PeerEvent::Unreachable(to));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(MAX_PEER_FRAME)
            .new_codec();
        let mut writer = FramedWrite::new(stream, codec);
        let mut hello = BytesMut::with_capacity(16);
        hello.put_slice(HELLO);
        hello.put_u64(me);
        if let Err(error) = writer.send(hello.freeze()).await {
            watch.failed(&format!("connection lost: {error}"));
            continue;
        }
        watch.connected();
        let mut judge = tokio::time::interval(silence / 4);
        judge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'connected: loop {
            let first = tokio::select! {
                message = outbox.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
                _ = judge.tick() => {
                    watch.judge(tokio::time::Instant::now());
                    continue 'connected;
                }
                _ = shutdown.cancelled() => return,
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match outbox.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let snapshots = batch.iter().filter(|o| o.is_snapshot()).count();
            // A peer that stopped reading (its process paused) makes the write wait once the
            // socket's buffers are full: it is judged meanwhile, and found silent.
            let write = write_batch(&mut writer, &batch);
            tokio::pin!(write);
            let failed = loop {
                tokio::select! {
                    written = &mut write => break written.err(),
                    _ = judge.tick() => watch.judge(tokio::time::Instant::now()),
                    _ = shutdown.cancelled() => return,
                }
            };
            for _ in 0..snapshots {
                let _ = events.send(PeerEvent::SnapshotSent(to, failed.is_none()));
            }
            if let Some(error) = failed {
                watch.failed(&format!("connection lost: {error}"));
                let _ = events.send(PeerEvent::Unreachable(to));
                break 'connected;
            }
            watch.sent(tokio::time::Instant::now());
        }
    }
}

/// Writes `batch` and flushes it.
async fn write_batch(
    writer: &mut FramedWrite<TcpStream, LengthDelimitedCodec>,
    batch: &[PeerMessage],
) -> std::io::Result<()> {
    for outgoing in batch {
        if let Some(bytes) = encode(outgoing) {
            writer.feed(bytes).await?;
        }
    }
    SinkExt::<Bytes>::flush(writer).await
}

async fn accept(
    listener: TcpListener,
    members: Vec<u64>,
    heard: Heard,
    inbound: mpsc::Sender<PeerInbound>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(read_peer(
                    stream,
                    peer,
                    members.clone(),
                    heard.clone(),
                    inbound.clone(),
                    shutdown.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_peer(
    stream: TcpStream,
    peer: SocketAddr,
    members: Vec<u64>,
    heard: Heard,
    inbound: mpsc::Sender<PeerInbound>,
    shutdown: CancellationToken,
) {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_PEER_FRAME)
        .new_codec();
    let mut reader = FramedRead::new(stream, codec);
    let hello = tokio::select! {
        hello = tokio::time::timeout(Duration::from_secs(5), reader.next()) => hello,
        _ = shutdown.cancelled() => return,
    };
    let from = match hello {
        Ok(Some(Ok(frame))) if frame.len() == 16 && &frame[..8] == HELLO => {
            u64::from_be_bytes(frame[8..16].try_into().expect("8 bytes"))
        }
        _ => {
            tracing::warn!(%peer, "peer connection without a valid hello; closed");
            return;
        }
    };
    if !members.contains(&from) {
        tracing::warn!(%peer, from, "connection from a member not in this cluster's configuration; closed");
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = reader.next() => frame,
            _ = shutdown.cancelled() => return,
        };
        let bytes = match frame {
            Some(Ok(bytes)) => {
                heard.record(from);
                bytes
            }
            Some(Err(error)) => {
                tracing::warn!(%peer, from, %error, "bad frame from peer; connection closed");
                let _ = inbound.send(PeerInbound::Disconnected(from)).await;
                return;
            }
            None => {
                let _ = inbound.send(PeerInbound::Disconnected(from)).await;
                return;
            }
        };
        match decode(&bytes, from) {
            Ok(received) => {
                if inbound.send(received).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%peer, from, %error, "bad frame from peer; connection closed");
                return;
            }
        }
    }
}

/// Why a frame from a peer was refused (its connection is then closed).
#[derive(Debug, thiserror::Error)]
enum BadPeerFrame {
    #[error("empty peer frame")]
    Empty,
    #[error("undecodable raft message")]
    Raft(#[source] protobuf::ProtobufError),
    #[error("raft message claims to be from {claimed} on member {from}'s connection")]
    WrongSender { claimed: u64, from: u64 },
    #[error("truncated heartbeat batch")]
    TruncatedTouches,
    #[error("heartbeat batch announces {count} sessions but holds {bytes} bytes")]
    TouchCount { count: usize, bytes: usize },
    #[error("unknown peer frame tag {0}")]
    UnknownTag(u8),
}

fn decode(frame: &[u8], from: u64) -> Result<PeerInbound, BadPeerFrame> {
    let (&tag, body) = frame.split_first().ok_or(BadPeerFrame::Empty)?;
    match tag {
        TAG_RAFT => {
            let message = Message::parse_from_bytes(body).map_err(BadPeerFrame::Raft)?;
            if message.from != from {
                return Err(BadPeerFrame::WrongSender {
                    claimed: message.from,
                    from,
                });
            }
            Ok(PeerInbound::Raft(message))
        }
        TAG_TOUCH => {
            let (count, ids) = body
                .split_first_chunk::<4>()
                .ok_or(BadPeerFrame::TruncatedTouches)?;
            let count = u32::from_be_bytes(*count) as usize;
            if ids.len() != count * 8 {
                return Err(BadPeerFrame::TouchCount {
                    count,
                    bytes: ids.len(),
                });
            }
            Ok(PeerInbound::Touch(
                ids.chunks_exact(8)
                    .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
                    .collect(),
            ))
        }
        TAG_LOST_STATE if body.is_empty() => Ok(PeerInbound::LostState(from)),
        other => Err(BadPeerFrame::UnknownTag(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let message = Message {
            from: 2,
            to: 1,
            term: 9,
            ..Message::default()
        };
        let bytes = encode(&PeerMessage::Raft(message)).unwrap();
        match decode(&bytes, 2).unwrap() {
            PeerInbound::Raft(back) => assert_eq!((back.from, back.term), (2, 9)),
            other => panic!("{other:?}"),
        }
        assert!(
            decode(&bytes, 3)
                .unwrap_err()
                .to_string()
                .contains("claims to be from 2")
        );

        let touches = encode(&PeerMessage::Touch(vec![7, 8])).unwrap();
        assert!(matches!(decode(&touches, 2).unwrap(), PeerInbound::Touch(ids) if ids == [7, 8]));
        assert!(decode(&touches[..touches.len() - 1], 2).is_err());
        assert!(decode(&[], 2).is_err());
        let lost = encode(&PeerMessage::LostState).unwrap();
        assert!(matches!(
            decode(&lost, 3).unwrap(),
            PeerInbound::LostState(3)
        ));
        assert!(
            decode(&[9, 1, 2], 2)
                .unwrap_err()
                .to_string()
                .contains("unknown peer frame tag")
        );
        assert!(decode(&[TAG_RAFT, 0xff, 0xff, 0xff], 2).is_err());
    }
}
