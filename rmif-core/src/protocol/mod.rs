//! The rmif wire protocol: frame kinds, statuses and the byte layout of one frame.
//!
//! docs/PROTOCOL.md describes the same layout for implementers in other languages; the golden-byte
//! tests in `tests/protocol.rs` pin it.

mod codec;
mod frame;
pub mod ids;

pub use codec::{FrameCodec, ProtocolError};
pub use frame::{Frame, FrameHeader, FrameKind, Metadata, OutFrame, RequestHead, Status};

/// The two bytes that start every frame after its length prefix: `RM`.
pub const MAGIC: [u8; 2] = *b"RM";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Size of the big-endian `u32` length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Size of the fixed header that follows the length prefix.
pub const HEADER_LEN: usize = 16;
/// Size of the request extension that follows the header of a request frame.
pub const REQUEST_HEAD_LEN: usize = 16;
/// Default cap on the length prefix (header + body), in bytes.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;
/// Stream items a provider may send before the consumer grants more credit.
pub const INITIAL_STREAM_WINDOW: u32 = 64;

/// Header flag: a metadata block follows the header (and the request extension).
pub const FLAG_METADATA: u8 = 0b0000_0001;
