//! Pluggable body serialization: the [`BodyFormat`] trait, its implementations, and the table of
//! wire ids in [`Serialization`]. JSON needs the `json` feature (on by default).

use bytes::{BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::features::{LeftOut, list};

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
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
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

/// Formats rmif defines that this build leaves out, so that asking for one names its feature.
pub(crate) const LEFT_OUT: &[LeftOut] = &[
    #[cfg(not(feature = "json"))]
    LeftOut {
        id: 2,
        name: "json",
    },
];

/// The table of body formats, by wire id. A consumer picks one in its configuration; a provider
/// answers in the format of each request.
///
/// Non-exhaustive because features add variants: a `match` written against a build without
/// `json` must still compile when another crate in the build turns `json` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum Serialization {
    /// [`MsgPack`], the default.
    #[default]
    MsgPack = MsgPack::ID,
    /// [`Json`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Json = Json::ID,
}

impl Serialization {
    /// Every format this build supports.
    pub const ALL: [Serialization; 1 + cfg!(feature = "json") as usize] = [
        Serialization::MsgPack,
        #[cfg(feature = "json")]
        Serialization::Json,
    ];

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

    /// The format of a request whose header carries serialization id `id`, or the reason a
    /// provider refuses the request: an id this build leaves out names the feature that adds it.
    pub(crate) fn of_request(id: u8) -> Result<Self, String> {
        if let Some(format) = Self::from_id(id) {
            return Ok(format);
        }
        let supported: Vec<String> = Self::ALL
            .iter()
            .map(|format| format!("{} ({})", format.name(), format.id()))
            .collect();
        Err(match LeftOut::by_id(LEFT_OUT, id) {
            Some(missing) => format!(
                "serialization id {id} is {0}, and this provider was built without {0} \
                 (rmif-core's `{0}` feature): send {1}, or build the provider with the feature",
                missing.name,
                list(&supported, "or"),
            ),
            None => format!(
                "unsupported serialization id {id}; this provider supports {}",
                list(&supported, "and")
            ),
        })
    }

    /// The wire id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Serialization::MsgPack => MsgPack::NAME,
            #[cfg(feature = "json")]
            Serialization::Json => Json::NAME,
        }
    }

    /// Appends the encoding of `value` to `dst`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T, dst: &mut BytesMut) -> Result<(), Error> {
        match self {
            Serialization::MsgPack => MsgPack::encode(value, dst),
            #[cfg(feature = "json")]
            Serialization::Json => Json::encode(value, dst),
        }
    }

    /// Decodes a value from exactly `src`.
    pub fn decode<T: DeserializeOwned>(self, src: &[u8]) -> Result<T, Error> {
        match self {
            Serialization::MsgPack => MsgPack::decode(src),
            #[cfg(feature = "json")]
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

    #[test]
    fn a_request_in_an_unknown_format_is_refused_with_what_is_supported() {
        let reason = Serialization::of_request(9).unwrap_err();
        assert!(
            reason
                .starts_with("unsupported serialization id 9; this provider supports msgpack (1)"),
            "{reason}"
        );
        assert_eq!(Serialization::of_request(1), Ok(Serialization::MsgPack));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_is_wire_id_2() {
        assert_eq!(Serialization::of_request(2), Ok(Serialization::Json));
        assert_eq!(
            Serialization::of_request(9).unwrap_err(),
            "unsupported serialization id 9; this provider supports msgpack (1) and json (2)"
        );
    }

    #[cfg(not(feature = "json"))]
    #[test]
    fn without_json_a_json_request_is_refused_naming_the_feature() {
        assert_eq!(Serialization::ALL, [Serialization::MsgPack]);
        assert_eq!(Serialization::from_id(2), None);
        assert_eq!(Serialization::from_name("json"), None);
        assert_eq!(
            Serialization::of_request(2).unwrap_err(),
            "serialization id 2 is json, and this provider was built without json (rmif-core's \
             `json` feature): send msgpack (1), or build the provider with the feature"
        );
    }
}
