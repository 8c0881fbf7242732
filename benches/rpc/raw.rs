//! The floor: a minimal pipelined protocol over one connection, no framework.
//!
//! Frames are u32-length-prefixed (`LengthDelimitedCodec`). A request is `id: u64, op: u8,
//! payload`; a response is `id: u64, payload`. `add`'s payload is two big-endian u64s and its
//! answer one; `echo`'s payload is the body, answered as is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::backend::Backend;
use crate::caller::Caller;

const OP_ADD: u8 = 0;
const OP_ECHO: u8 = 1;
/// `echo` whose body (and answer) is an lz4 block preceded by its size, as rmif sends it.
const OP_ECHO_LZ4: u8 = 2;
/// Bodies from this size are compressed in the `-lz4` rows (rmif's threshold there too).
const LZ4_THRESHOLD: usize = 1024;

/// Serves every connection with one task that answers requests in order.
pub async fn serve(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection(stream));
    }
}

async fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(read, LengthDelimitedCodec::new());
    let mut responses = FramedWrite::new(write, LengthDelimitedCodec::new());
    while let Some(request) = requests.next().await {
        responses.feed(answer(request?)).await?;
        // Answer everything already received before paying for one write system call.
        while let Some(Some(request)) = requests.next().now_or_never() {
            responses.feed(answer(request?)).await?;
        }
        SinkExt::<Bytes>::flush(&mut responses).await?;
    }
    Ok(())
}

/// The baseline for handlers that await: each request in a task of its own (its `add` asks
/// `backend`), every answer through one writer task per connection that writes whatever
/// accumulated in one system call.
pub async fn serve_spawning(listener: TcpListener, backend: Backend) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection_spawning(stream, backend.clone()));
    }
}

async fn serve_connection_spawning(stream: TcpStream, backend: Backend) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(read, LengthDelimitedCodec::new());
    let (answers, queue) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(
        queue,
        FramedWrite::new(write, LengthDelimitedCodec::new()),
    ));
    while let Some(request) = requests.next().await {
        let mut request = request?;
        let (answers, backend) = (answers.clone(), backend.clone());
        tokio::spawn(async move {
            let response = if request.get(8) == Some(&OP_ADD) {
                let id = request.get_u64();
                request.advance(1);
                let (a, b) = (request.get_u64(), request.get_u64());
                let mut response = BytesMut::with_capacity(16);
                response.put_u64(id);
                response.put_u64(backend.add(a, b).await);
                response.freeze()
            } else {
                answer(request)
            };
            let _ = answers.send(response);
        });
    }
    Ok(())
}

fn answer(mut request: BytesMut) -> Bytes {
    let id = request.get_u64();
    let op = request.get_u8();
    let mut response = BytesMut::with_capacity(8 + request.len());
    response.put_u64(id);
    match op {
        OP_ADD => {
            let (a, b) = (request.get_u64(), request.get_u64());
            response.put_u64(a.wrapping_add(b));
        }
        OP_ECHO_LZ4 => {
            let body = lz4_flex::decompress_size_prepended(&request).expect("lz4 request");
            response.extend_from_slice(&lz4_flex::compress_prepend_size(&body));
        }
        _ => response.extend_from_slice(&request),
    }
    response.freeze()
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<BytesMut>>>>;

/// The client: callers hand frames to a writer task and wait on a oneshot that a reader task
/// completes by id.
#[derive(Clone)]
pub struct RawCaller {
    next_id: Arc<AtomicU64>,
    pending: Pending,
    outgoing: mpsc::UnboundedSender<Bytes>,
    lz4: bool,
}

impl RawCaller {
    pub async fn connect(addr: SocketAddr, lz4: bool) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to raw");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (read, write) = stream.into_split();
        let pending = Pending::default();
        let (outgoing, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(
            queue,
            FramedWrite::new(write, LengthDelimitedCodec::new()),
        ));
        tokio::spawn(read_responses(
            FramedRead::new(read, LengthDelimitedCodec::new()),
            pending.clone(),
        ));
        RawCaller {
            next_id: Arc::default(),
            pending,
            outgoing,
            lz4,
        }
    }

    async fn call(&self, op: u8, payload: &[u8]) -> Result<BytesMut, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = BytesMut::with_capacity(9 + payload.len());
        frame.put_u64(id);
        frame.put_u8(op);
        frame.extend_from_slice(payload);
        let (done, answer) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, done);
        self.outgoing
            .send(frame.freeze())
            .map_err(|_| "connection closed".to_owned())?;
        answer.await.map_err(|_| "connection closed".to_owned())
    }
}

/// Writes the frames queued by many tasks, whatever accumulated meanwhile in one system call.
async fn write_frames(
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, LengthDelimitedCodec>,
) -> std::io::Result<()> {
    while let Some(frame) = queue.recv().await {
        sink.feed(frame).await?;
        // Coalesce whatever other tasks queued meanwhile into the same write.
        while let Ok(frame) = queue.try_recv() {
            sink.feed(frame).await?;
        }
        SinkExt::<Bytes>::flush(&mut sink).await?;
    }
    Ok(())
}

async fn read_responses(
    mut responses: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
    pending: Pending,
) {
    while let Some(Ok(mut response)) = responses.next().await {
        let id = response.get_u64();
        if let Some(done) = pending.lock().unwrap().remove(&id) {
            let _ = done.send(response);
        }
    }
    // Fail every waiting caller: dropping their senders wakes them with an error.
    pending.lock().unwrap().clear();
}

impl Caller for RawCaller {
    async fn add(&self, a: u64, b: u64) -> Result<u64, String> {
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&a.to_be_bytes());
        payload[8..].copy_from_slice(&b.to_be_bytes());
        let mut answer = self.call(OP_ADD, &payload).await?;
        if answer.len() != 8 {
            return Err(format!("add answer of {} bytes", answer.len()));
        }
        Ok(answer.get_u64())
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        if self.lz4 && body.len() >= LZ4_THRESHOLD {
            let packed = lz4_flex::compress_prepend_size(&body);
            let answer = self.call(OP_ECHO_LZ4, &packed).await?;
            return lz4_flex::decompress_size_prepended(&answer).map_err(|e| e.to_string());
        }
        Ok(self.call(OP_ECHO, &body).await?.to_vec())
    }
}
