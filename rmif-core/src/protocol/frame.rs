//! One frame: its header fields, the request extension, metadata, and how it is laid out in bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::{FLAG_METADATA, HEADER_LEN, LENGTH_PREFIX_LEN, MAGIC, REQUEST_HEAD_LEN, VERSION};

/// What a frame is for. The numeric values are part of the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Consumer to provider: call a method.
    Request = 1,
    /// Provider to consumer: the outcome of a unary call, or the opening of a stream.
    Response = 2,
    /// Provider to consumer: one item of a server stream.
    StreamItem = 3,
    /// Provider to consumer: a server stream ended (its status says how).
    StreamEnd = 4,
    /// Consumer to provider: abandon a call or a stream.
    Cancel = 5,
    /// Either way: are you there? (sent on an idle connection every tick)
    Heartbeat = 6,
    /// Either way: the answer to a heartbeat.
    HeartbeatAck = 7,
    /// Provider to consumer: no new calls on this connection; in-flight calls still complete.
    GoAway = 8,
    /// Consumer to provider: the consumer can buffer this many more stream items.
    StreamCredit = 9,
}

impl FrameKind {
    /// Parses a wire value.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::StreamItem,
            4 => FrameKind::StreamEnd,
            5 => FrameKind::Cancel,
            6 => FrameKind::Heartbeat,
            7 => FrameKind::HeartbeatAck,
            8 => FrameKind::GoAway,
            9 => FrameKind::StreamCredit,
            _ => return None,
        })
    }
}

/// Outcome carried by responses, stream items and stream ends. Values are part of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Success; the body is the serialized return value (or item).
    Ok = 0,
    /// The method returned its own error; the body is the serialized error value.
    AppError = 1,
    /// The provider does not serve the requested service id. Body: UTF-8 message.
    UnknownService = 2,
    /// The service has no method with the requested id. Body: UTF-8 message.
    UnknownMethod = 3,
    /// The request could not be decoded (arguments, serialization, compression). Body: UTF-8.
    BadRequest = 4,
    /// The provider is at its concurrency limit; the call did not run. Body: UTF-8.
    Overloaded = 5,
    /// The deadline passed on the provider before the handler finished. Body: UTF-8.
    DeadlineExceeded = 6,
    /// The provider is shutting down; the call did not run. Body: UTF-8.
    ShuttingDown = 7,
    /// The handler failed without an application error (it panicked). Body: UTF-8.
    Internal = 8,
    /// A provider layer refused the call (access control, a rate limit); the handler did not
    /// run. Body: UTF-8.
    Rejected = 9,
}

impl Status {
    /// Parses a wire value.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Status::Ok,
            1 => Status::AppError,
            2 => Status::UnknownService,
            3 => Status::UnknownMethod,
            4 => Status::BadRequest,
            5 => Status::Overloaded,
            6 => Status::DeadlineExceeded,
            7 => Status::ShuttingDown,
            8 => Status::Internal,
            9 => Status::Rejected,
            _ => return None,
        })
    }
}

/// The fixed 16-byte header every frame starts with (after the length prefix and magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame is for.
    pub kind: FrameKind,
    /// Serialization id of the body (see [`crate::Serialization`]); 0 when the body is not
    /// serialized data.
    pub serialization: u8,
    /// Compression id of the body (see [`crate::Compression`]).
    pub compression: u8,
    /// Outcome, for responses, stream items and stream ends; 0 otherwise.
    pub status: u8,
    /// The call this frame belongs to; 0 for connection-level frames.
    pub request_id: u64,
}

impl FrameHeader {
    /// A header of the given kind for the given call with every other field zero.
    pub fn new(kind: FrameKind, request_id: u64) -> Self {
        FrameHeader {
            kind,
            serialization: 0,
            compression: 0,
            status: 0,
            request_id,
        }
    }

    /// The same header with a status.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status as u8;
        self
    }
}

/// The extension that follows the header of a request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// [`crate::protocol::ids::service_id`] of the service key.
    pub service_id: u64,
    /// [`crate::protocol::ids::method_id`] of the method name.
    pub method_id: u32,
    /// Time the consumer still waits for the answer, in milliseconds; 0 means no deadline.
    pub timeout_ms: u32,
}

/// Key/value pairs attached to a request (tracing ids, auth tokens, a consistent-hash key).
///
/// Keys are at most 255 bytes and values at most 65,535 bytes; [`Metadata::insert`] enforces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// Most entries one frame may carry.
    pub const MAX_ENTRIES: usize = 64;

    /// An empty set (does not allocate).
    pub const fn new() -> Self {
        Metadata {
            entries: Vec::new(),
        }
    }

    /// Adds an entry; fails if the key or value is too long for the wire format or the set is
    /// full.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), crate::Error> {
        let (key, value) = (key.into(), value.into());
        if key.is_empty() || key.len() > u8::MAX as usize {
            return Err(crate::Error::Config(format!(
                "metadata key {key:?} must be 1 to 255 bytes long"
            )));
        }
        if value.len() > u16::MAX as usize {
            return Err(crate::Error::Config(format!(
                "metadata value of {key:?} is {} bytes; at most 65535 are allowed",
                value.len()
            )));
        }
        if self.entries.len() >= Self::MAX_ENTRIES {
            return Err(crate::Error::Config(format!(
                "at most {} metadata entries are allowed",
                Self::MAX_ENTRIES
            )));
        }
        self.entries.push((key, value));
        Ok(())
    }

    /// The value of the first entry with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push_unchecked(&mut self, key: String, value: String) {
        self.entries.push((key, value));
    }

    fn encoded_len(&self) -> usize {
        2 + self
            .entries
            .iter()
            .map(|(k, v)| 1 + k.len() + 2 + v.len())
            .sum::<usize>()
    }

    fn encode(&self, dst: &mut BytesMut) {
        dst.put_u16(self.entries.len() as u16);
        for (key, value) in &self.entries {
            dst.put_u8(key.len() as u8);
            dst.put_slice(key.as_bytes());
            dst.put_u16(value.len() as u16);
            dst.put_slice(value.as_bytes());
        }
    }
}

/// A decoded frame. The body is a zero-copy slice of the read buffer, still compressed if the
/// header says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The fixed header.
    pub header: FrameHeader,
    /// Present exactly when `header.kind` is [`FrameKind::Request`].
    pub request: Option<RequestHead>,
    /// Request metadata (empty for most frames).
    pub metadata: Metadata,
    /// The body as it was on the wire.
    pub body: Bytes,
}

/// A frame to be written, borrowing its metadata and body so that nothing is copied twice.
#[derive(Debug, Clone, Copy)]
pub struct OutFrame<'a> {
    /// The fixed header.
    pub header: FrameHeader,
    /// Must be `Some` exactly when `header.kind` is [`FrameKind::Request`].
    pub request: Option<RequestHead>,
    /// Metadata to attach (requests only, by convention).
    pub metadata: Option<&'a Metadata>,
    /// The body, already serialized and compressed.
    pub body: &'a [u8],
}

impl<'a> OutFrame<'a> {
    /// A frame with just a header and a body.
    pub fn new(header: FrameHeader, body: &'a [u8]) -> Self {
        OutFrame {
            header,
            request: None,
            metadata: None,
            body,
        }
    }

    fn metadata(&self) -> Option<&'a Metadata> {
        self.metadata.filter(|m| !m.is_empty())
    }

    /// Bytes the frame occupies on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        LENGTH_PREFIX_LEN
            + HEADER_LEN
            + if self.request.is_some() {
                REQUEST_HEAD_LEN
            } else {
                0
            }
            + self.metadata().map_or(0, Metadata::encoded_len)
            + self.body.len()
    }

    /// Appends the frame's bytes to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let total = self.encoded_len();
        dst.reserve(total);
        let metadata = self.metadata();
        dst.put_u32((total - LENGTH_PREFIX_LEN) as u32);
        dst.put_slice(&MAGIC);
        dst.put_u8(VERSION);
        dst.put_u8(self.header.kind as u8);
        dst.put_u8(self.header.serialization);
        dst.put_u8(self.header.compression);
        dst.put_u8(self.header.status);
        dst.put_u8(if metadata.is_some() { FLAG_METADATA } else { 0 });
        dst.put_u64(self.header.request_id);
        if let Some(request) = self.request {
            dst.put_u64(request.service_id);
            dst.put_u32(request.method_id);
            dst.put_u32(request.timeout_ms);
        }
        if let Some(metadata) = metadata {
            metadata.encode(dst);
        }
        dst.put_slice(self.body);
    }
}
