//! The tokio-util codec that cuts a byte stream into frames, enforcing every size limit.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{Frame, FrameHeader, FrameKind, Metadata, OutFrame, RequestHead};
use super::{
    DEFAULT_MAX_FRAME_SIZE, FLAG_METADATA, HEADER_LEN, LENGTH_PREFIX_LEN, MAGIC, REQUEST_HEAD_LEN,
    VERSION,
};

/// Why a byte stream could not be read as rmif frames. Any of these closes the connection: once
/// framing is lost, nothing after it can be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame does not start with `RM`.
    #[error("bad magic {found:02x?} (expected {MAGIC:02x?} \"RM\"): the peer does not speak rmif")]
    BadMagic {
        /// The two bytes found instead.
        found: [u8; 2],
    },
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version {0} (this build speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// The frame kind byte is not one of the known kinds.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The length prefix is above the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// Length announced by the prefix.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The frame's length is too short for what its header says it contains.
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    /// A field holds a value that cannot be valid.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes of it received)")]
    UnexpectedEof {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// Reading from the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames in, frames out, with a cap on the size of any one frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_size: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameCodec {
    /// A codec that rejects frames whose length prefix exceeds `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Self {
        FrameCodec { max_frame_size }
    }

    /// The configured maximum frame size.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if src.len() < LENGTH_PREFIX_LEN {
            return Ok(None);
        }
        // Check the magic as soon as it arrives so that a peer speaking another protocol is
        // turned away at once, named as such, instead of after its "length" worth of bytes.
        if src.len() >= LENGTH_PREFIX_LEN + MAGIC.len() && src[4..6] != MAGIC {
            return Err(ProtocolError::BadMagic {
                found: [src[4], src[5]],
            });
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame_size,
            });
        }
        if len < HEADER_LEN {
            return Err(ProtocolError::Truncated(
                "length prefix is shorter than the 16-byte header",
            ));
        }
        if src.len() < LENGTH_PREFIX_LEN + len {
            src.reserve(LENGTH_PREFIX_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_LEN);
        let mut buf = src.split_to(len);
        decode_frame(&mut buf).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::UnexpectedEof {
                buffered: src.len(),
            }),
        }
    }
}

/// Parses one frame whose length prefix has been removed; `buf` holds exactly the frame.
fn decode_frame(buf: &mut BytesMut) -> Result<Frame, ProtocolError> {
    let found = [buf[0], buf[1]];
    if found != MAGIC {
        return Err(ProtocolError::BadMagic { found });
    }
    buf.advance(MAGIC.len());
    let version = buf.get_u8();
    if version != VERSION {
        return Err(ProtocolError::UnsupportedVersion(version));
    }
    let kind_byte = buf.get_u8();
    let kind = FrameKind::from_u8(kind_byte).ok_or(ProtocolError::UnknownKind(kind_byte))?;
    let serialization = buf.get_u8();
    let compression = buf.get_u8();
    let status = buf.get_u8();
    let flags = buf.get_u8();
    let request_id = buf.get_u64();
    if flags & !FLAG_METADATA != 0 {
        return Err(ProtocolError::Malformed(format!(
            "unknown flag bits {flags:#010b}"
        )));
    }
    let request = if kind == FrameKind::Request {
        if buf.len() < REQUEST_HEAD_LEN {
            return Err(ProtocolError::Truncated(
                "request frame is shorter than its 16-byte request extension",
            ));
        }
        Some(RequestHead {
            service_id: buf.get_u64(),
            method_id: buf.get_u32(),
            timeout_ms: buf.get_u32(),
        })
    } else {
        None
    };
    let metadata = if flags & FLAG_METADATA != 0 {
        decode_metadata(buf)?
    } else {
        Metadata::new()
    };
    Ok(Frame {
        header: FrameHeader {
            kind,
            serialization,
            compression,
            status,
            request_id,
        },
        request,
        metadata,
        body: std::mem::take(buf).freeze(),
    })
}

fn decode_metadata(buf: &mut BytesMut) -> Result<Metadata, ProtocolError> {
    fn take_str(buf: &mut BytesMut, len: usize, what: &str) -> Result<String, ProtocolError> {
        if buf.len() < len {
            return Err(ProtocolError::Truncated(
                "metadata runs past the frame's end",
            ));
        }
        let bytes = buf.split_to(len);
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ProtocolError::Malformed(format!("metadata {what} is not UTF-8")))
    }

    if buf.len() < 2 {
        return Err(ProtocolError::Truncated(
            "metadata count runs past the frame's end",
        ));
    }
    let count = buf.get_u16() as usize;
    if count > Metadata::MAX_ENTRIES {
        return Err(ProtocolError::Malformed(format!(
            "{count} metadata entries; at most {} are allowed",
            Metadata::MAX_ENTRIES
        )));
    }
    let mut metadata = Metadata::new();
    for _ in 0..count {
        if buf.is_empty() {
            return Err(ProtocolError::Truncated(
                "metadata runs past the frame's end",
            ));
        }
        let key_len = buf.get_u8() as usize;
        let key = take_str(buf, key_len, "key")?;
        if buf.len() < 2 {
            return Err(ProtocolError::Truncated(
                "metadata runs past the frame's end",
            ));
        }
        let value_len = buf.get_u16() as usize;
        let value = take_str(buf, value_len, "value")?;
        metadata.push_unchecked(key, value);
    }
    Ok(metadata)
}

impl Encoder<OutFrame<'_>> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: OutFrame<'_>, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let len = frame.encoded_len() - LENGTH_PREFIX_LEN;
        if len > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame_size,
            });
        }
        frame.encode(dst);
        Ok(())
    }
}
