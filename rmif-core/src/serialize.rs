//! Pluggable body serialization: the [`BodyFormat`] trait, its implementations, and the table of
//! wire ids in [`Serialization`].

use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// One way of turning values into body bytes and back.
///
/// Serde's generic methods keep this trait from being used as `dyn`; the table of formats is the
/// [`Serialization`] enum, which maps each wire id to its implementation. Adding a format means
/// implementing this trait and adding a row to that table.
pub trait BodyFormat {
    /// The id written into the frame header.
    const ID: u8;
    /// The name used in configuration files.
    const NAME: &'static str;

    /// Appends the encoding of `value` to `dst`.
    fn encode<T: Serialize + ?Sized>(value: &T, dst: &mut BytesMut) -> Result<(), Error>;

    /// Decodes a value from exactly `src`.
    fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, Error>;
}

/// MessagePack via rmp-serde, structs encoded as maps so that fields can be added and reordered
/// between versions of a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl BodyFormat for MsgPack {
    const ID: u8 = 1;
    const NAME: &'static str = "msgpack";

    fn encode<T: Serialize + ?Sized>(value: &T, dst: &mut BytesMut) -> Result<(), Error> {
        let mut serializer = rmp_serde::Serializer::new(dst.writer()).with_struct_map();
        value
            .serialize(&mut serializer)
            .map_err(|e| Error::Serialization(format!("msgpack encode: {e}")))
    }

    fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, Error> {
        rmp_serde::from_slice(src).map_err(|e| Error::Serialization(format!("msgpack decode: {e}")))
    }
}

/// JSON via serde_json: larger and slower, but readable on the wire and easy from any language.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl BodyFormat for Json {
    const ID: u8 = 2;
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(value: &T, dst: &mut BytesMut) -> Result<(), Error> {
        serde_json::to_writer(dst.writer(), value)
            .map_err(|e| Error::Serialization(format!("json encode: {e}")))
    }

    fn decode<T: DeserializeOwned>(src: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(src).map_err(|e| Error::Serialization(format!("json decode: {e}")))
    }
}

/// The table of body formats, by wire id. A consumer picks one in its configuration; a provider
/// answers in the format of each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Serialization {
    /// [`MsgPack`], the default.
    #[default]
    MsgPack = MsgPack::ID,
    /// [`Json`].
    Json = Json::ID,
}

impl Serialization {
    /// Every supported format.
    pub const ALL: [Serialization; 2] = [Serialization::MsgPack, Serialization::Json];

    /// The format with this wire id, if this build supports it.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The format with this configuration name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The wire id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Serialization::MsgPack => MsgPack::NAME,
            Serialization::Json => Json::NAME,
        }
    }

    /// Appends the encoding of `value` to `dst`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T, dst: &mut BytesMut) -> Result<(), Error> {
        match self {
            Serialization::MsgPack => MsgPack::encode(value, dst),
            Serialization::Json => Json::encode(value, dst),
        }
    }

    /// Decodes a value from exactly `src`.
    pub fn decode<T: DeserializeOwned>(self, src: &[u8]) -> Result<T, Error> {
        match self {
            Serialization::MsgPack => MsgPack::decode(src),
            Serialization::Json => Json::decode(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: i32,
        label: String,
    }

    #[test]
    fn every_format_round_trips() {
        let point = Point {
            x: -3,
            label: "p".into(),
        };
        for format in Serialization::ALL {
            let mut buf = BytesMut::new();
            format.encode(&point, &mut buf).unwrap();
            let back: Point = format.decode(&buf).unwrap();
            assert_eq!(back, point, "{format:?}");
            assert_eq!(Serialization::from_id(format.id()), Some(format));
            assert_eq!(
                Serialization::from_name(&format.name().to_uppercase()),
                Some(format)
            );
        }
    }

    #[test]
    fn msgpack_encodes_structs_as_maps() {
        let mut buf = BytesMut::new();
        Serialization::MsgPack
            .encode(
                &Point {
                    x: 1,
                    label: "a".into(),
                },
                &mut buf,
            )
            .unwrap();
        // fixmap of 2 entries, then the fixstr "x".
        assert_eq!(&buf[..3], &[0x82, 0xa1, b'x']);
    }

    #[test]
    fn garbage_is_a_serialization_error() {
        for format in Serialization::ALL {
            let err = format.decode::<Point>(&[0xc1, 0xff, 0x00]).unwrap_err();
            assert!(matches!(err, Error::Serialization(_)), "{err:?}");
        }
        assert_eq!(Serialization::from_id(0), None);
        assert_eq!(Serialization::from_id(9), None);
    }
}
