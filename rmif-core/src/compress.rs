//! Pluggable body compression (none, lz4) applied above a size threshold, with a cap on what a
//! compressed body may expand to. LZ4 needs the `lz4` feature (on by default).

#[cfg(feature = "lz4")]
use bytes::BufMut;
use bytes::{Bytes, BytesMut};

use crate::features::LeftOut;

/// Compression algorithms, by wire id.
///
/// Non-exhaustive because features add variants: a `match` written against a build without
/// `lz4` must still compile when another crate in the build turns `lz4` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum Compression {
    /// The body is sent as is.
    #[default]
    None = 0,
    /// LZ4 block format (lz4_flex), preceded by the uncompressed size as a big-endian `u32`.
    #[cfg(feature = "lz4")]
    #[cfg_attr(docsrs, doc(cfg(feature = "lz4")))]
    Lz4 = 1,
}

/// Algorithms rmif defines that this build leaves out, so that meeting one names its feature.
pub(crate) const LEFT_OUT: &[LeftOut] = &[
    #[cfg(not(feature = "lz4"))]
    LeftOut { id: 1, name: "lz4" },
];

/// Why a compressed body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The compression id is not one this build knows.
    #[error("unknown compression id {0}")]
    UnknownAlgorithm(u8),
    /// The algorithm is one rmif defines, but this build of rmif-core was made without it.
    #[error(
        "compression id {id} is {name}, which the receiver was built without (rmif-core's \
         `{name}` feature): set Compression=none on the sender, or build the receiver with the \
         feature"
    )]
    LeftOut {
        /// The compression id.
        id: u8,
        /// The algorithm's name, which is also the name of the feature that adds it.
        name: &'static str,
    },
    /// The body is too short to hold the size prefix.
    #[error("compressed body is shorter than its 4-byte size prefix")]
    Truncated,
    /// The announced uncompressed size is above the cap.
    #[error("compressed body would expand to {size} bytes, above the cap of {max} bytes")]
    TooLarge {
        /// Announced uncompressed size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The LZ4 data is corrupt or does not produce the announced size.
    #[error("corrupt lz4 body: {0}")]
    Corrupt(String),
}

impl Compression {
    /// Every algorithm this build supports.
    pub const ALL: [Compression; 1 + cfg!(feature = "lz4") as usize] = [
        Compression::None,
        #[cfg(feature = "lz4")]
        Compression::Lz4,
    ];

    /// The algorithm with this wire id.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u8 == id)
    }

    /// The algorithm with this configuration name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            #[cfg(feature = "lz4")]
            Compression::Lz4 => "lz4",
        }
    }
}

/// When and how to compress outgoing bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionPolicy {
    /// The algorithm used for bodies at or above the threshold.
    pub algorithm: Compression,
    /// Bodies smaller than this many bytes are sent uncompressed.
    pub threshold: usize,
}

impl Default for CompressionPolicy {
    fn default() -> Self {
        CompressionPolicy {
            algorithm: Compression::None,
            threshold: 4096,
        }
    }
}

impl CompressionPolicy {
    /// True when a body of `len` bytes should be compressed.
    pub fn applies_to(&self, len: usize) -> bool {
        self.algorithm != Compression::None && len >= self.threshold
    }

    /// Appends `body` to `dst`, compressed if the policy says so and it actually got smaller.
    /// Returns the algorithm whose id belongs in the frame header.
    pub fn compress_into(&self, body: &[u8], dst: &mut BytesMut) -> Compression {
        #[cfg(feature = "lz4")]
        if self.algorithm == Compression::Lz4
            && self.applies_to(body.len())
            && lz4_compress_into(body, dst)
        {
            return Compression::Lz4;
        }
        dst.extend_from_slice(body);
        Compression::None
    }
}

/// Appends the size prefix and the LZ4 block of `body` to `dst` if that is smaller than `body`;
/// otherwise leaves `dst` as it was and returns false.
#[cfg(feature = "lz4")]
fn lz4_compress_into(body: &[u8], dst: &mut BytesMut) -> bool {
    let Ok(size) = u32::try_from(body.len()) else {
        return false;
    };
    let start = dst.len();
    let bound = lz4_flex::block::get_maximum_output_size(body.len());
    dst.put_u32(size);
    dst.resize(start + 4 + bound, 0);
    if let Ok(written) = lz4_flex::block::compress_into(body, &mut dst[start + 4..])
        && 4 + written < body.len()
    {
        dst.truncate(start + 4 + written);
        return true;
    }
    dst.truncate(start);
    false
}

/// Expands a size-prefixed LZ4 block, refusing to go beyond `max_size` bytes.
#[cfg(feature = "lz4")]
fn lz4_decompress(body: Bytes, max_size: usize) -> Result<Bytes, DecompressError> {
    if body.len() < 4 {
        return Err(DecompressError::Truncated);
    }
    let size = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if size > max_size {
        return Err(DecompressError::TooLarge {
            size,
            max: max_size,
        });
    }
    let mut out = vec![0u8; size];
    let written = lz4_flex::block::decompress_into(&body[4..], &mut out)
        .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    if written != size {
        return Err(DecompressError::Corrupt(format!(
            "expanded to {written} bytes, but announced {size}"
        )));
    }
    Ok(Bytes::from(out))
}

/// Returns the plain body of a frame whose header carries compression id `id`, refusing to expand
/// beyond `max_size` bytes.
// Only LZ4 expands; a build without it has no use for the cap.
#[cfg_attr(not(feature = "lz4"), allow(unused_variables))]
pub fn decompress(id: u8, body: Bytes, max_size: usize) -> Result<Bytes, DecompressError> {
    match Compression::from_id(id) {
        Some(Compression::None) => Ok(body),
        #[cfg(feature = "lz4")]
        Some(Compression::Lz4) => lz4_decompress(body, max_size),
        None => Err(match LeftOut::by_id(LEFT_OUT, id) {
            Some(missing) => DecompressError::LeftOut {
                id,
                name: missing.name,
            },
            None => DecompressError::UnknownAlgorithm(id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_id_is_refused_and_none_passes_through() {
        assert_eq!(
            decompress(7, Bytes::new(), 1 << 20),
            Err(DecompressError::UnknownAlgorithm(7))
        );
        let plain = decompress(0, Bytes::from_static(b"as is"), 1 << 20).unwrap();
        assert_eq!(&plain[..], b"as is");
        assert_eq!(Compression::from_name("NONE"), Some(Compression::None));
    }

    #[cfg(not(feature = "lz4"))]
    #[test]
    fn without_lz4_an_lz4_body_is_refused_naming_the_feature() {
        assert_eq!(Compression::ALL, [Compression::None]);
        assert_eq!(Compression::from_name("lz4"), None);
        let err = decompress(1, Bytes::from_static(&[0, 0, 0, 9, 0xff]), 1 << 20).unwrap_err();
        assert_eq!(err, DecompressError::LeftOut { id: 1, name: "lz4" });
        assert_eq!(
            err.to_string(),
            "compression id 1 is lz4, which the receiver was built without (rmif-core's `lz4` \
             feature): set Compression=none on the sender, or build the receiver with the feature"
        );
    }

    #[cfg(feature = "lz4")]
    mod lz4 {
        use super::*;

        fn lz4() -> CompressionPolicy {
            CompressionPolicy {
                algorithm: Compression::Lz4,
                threshold: 16,
            }
        }

        #[test]
        fn compressible_body_round_trips() {
            let body = vec![b'a'; 10_000];
            let mut out = BytesMut::new();
            assert_eq!(lz4().compress_into(&body, &mut out), Compression::Lz4);
            assert!(out.len() < 200);
            let plain = decompress(Compression::Lz4 as u8, out.freeze(), 10_000).unwrap();
            assert_eq!(&plain[..], &body[..]);
        }

        #[test]
        fn small_or_incompressible_bodies_stay_plain() {
            let mut out = BytesMut::new();
            assert_eq!(lz4().compress_into(b"short", &mut out), Compression::None);
            assert_eq!(&out[..], b"short");

            let mut rng = fastrand::Rng::with_seed(7);
            let noise: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
            let mut out = BytesMut::new();
            assert_eq!(lz4().compress_into(&noise, &mut out), Compression::None);
            assert_eq!(&out[..], &noise[..]);
        }

        #[test]
        fn expansion_past_the_cap_is_refused_before_allocating() {
            let mut out = BytesMut::new();
            lz4().compress_into(&vec![0u8; 1 << 20], &mut out);
            let err = decompress(Compression::Lz4 as u8, out.freeze(), 64 * 1024).unwrap_err();
            assert_eq!(
                err,
                DecompressError::TooLarge {
                    size: 1 << 20,
                    max: 64 * 1024
                }
            );
        }

        #[test]
        fn lying_size_prefix_and_garbage_are_corrupt() {
            let mut out = BytesMut::new();
            lz4().compress_into(&vec![7u8; 1000], &mut out);
            let mut lying = out.to_vec();
            lying[..4].copy_from_slice(&2000u32.to_be_bytes());
            assert!(matches!(
                decompress(1, Bytes::from(lying), 1 << 20),
                Err(DecompressError::Corrupt(_))
            ));
            assert!(matches!(
                decompress(1, Bytes::from_static(&[0, 0, 0, 9, 0xff, 0xff]), 1 << 20),
                Err(DecompressError::Corrupt(_))
            ));
            assert_eq!(
                decompress(1, Bytes::from_static(&[0, 0]), 1 << 20),
                Err(DecompressError::Truncated)
            );
        }
    }
}
