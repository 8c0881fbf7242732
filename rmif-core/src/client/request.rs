//! A request as it goes on the wire: the arguments serialized (and compressed) once, reused by
//! every attempt, and the request frame built around it for one attempt.

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::time::Instant;

use crate::Error;
use crate::balance::request_hash;
use crate::compress::{Compression, CompressionPolicy};
use crate::protocol::{FrameHeader, FrameKind, Metadata, OutFrame, RequestHead};
use crate::serialize::Serialization;

/// How a service's requests are encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoding {
    pub(crate) serialization: Serialization,
    pub(crate) compression: CompressionPolicy,
    pub(crate) max_frame_size: usize,
    /// The balancer routes by a hash of the arguments.
    pub(crate) hash_arguments: bool,
}

/// Where one attempt's request goes: the service and method ids of the frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addressed {
    pub(crate) service_id: u64,
    pub(crate) method_id: u32,
}

/// A request body, encoded once and reused for every attempt.
#[derive(Debug, Clone)]
pub(crate) struct EncodedRequest {
    pub(crate) body: Bytes,
    pub(crate) compression: Compression,
    /// A hash of the serialized arguments, for balancers that route by it (else 0).
    pub(crate) hash: u64,
}

impl EncodedRequest {
    /// Serializes `args`, compressing the result when the policy says so; fails if the body
    /// would not fit a frame. A balancer that routes by hash gets the hash of `key` if given,
    /// else of all the arguments.
    pub(crate) fn encode<A, K>(encoding: Encoding, args: &A, key: Option<&K>) -> Result<Self, Error>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
    {
        let mut plain = BytesMut::with_capacity(64);
        encoding.serialization.encode(args, &mut plain)?;
        let hash = match key {
            _ if !encoding.hash_arguments => 0,
            None => request_hash(&plain),
            Some(key) => {
                let mut encoded = BytesMut::with_capacity(16);
                encoding.serialization.encode(key, &mut encoded)?;
                request_hash(&encoded)
            }
        };
        let policy = &encoding.compression;
        let (body, compression) = if policy.applies_to(plain.len()) {
            let mut packed = BytesMut::with_capacity(plain.len() / 2 + 16);
            let compression = policy.compress_into(&plain, &mut packed);
            (packed, compression)
        } else {
            (plain, Compression::None)
        };
        if body.len() > encoding.max_frame_size {
            return Err(Error::Serialization(format!(
                "request body of {} bytes exceeds the maximum frame size of {} bytes",
                body.len(),
                encoding.max_frame_size
            )));
        }
        Ok(EncodedRequest {
            body: body.freeze(),
            compression,
            hash,
        })
    }

    /// The frame of one attempt: request `id` on its connection, with the time left before
    /// `deadline` for the provider to know.
    pub(crate) fn frame<'a>(
        &'a self,
        serialization: Serialization,
        to: Addressed,
        metadata: &'a Metadata,
        id: u64,
        deadline: Instant,
    ) -> OutFrame<'a> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        OutFrame {
            header: FrameHeader {
                kind: FrameKind::Request,
                serialization: serialization.id(),
                compression: self.compression as u8,
                status: 0,
                request_id: id,
            },
            request: Some(RequestHead {
                service_id: to.service_id,
                method_id: to.method_id,
                timeout_ms: remaining.as_millis().clamp(1, u128::from(u32::MAX)) as u32,
            }),
            metadata: Some(metadata),
            body: &self.body,
        }
    }
}
