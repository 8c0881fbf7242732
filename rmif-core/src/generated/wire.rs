//! The wire form of arguments, results and stream items.
//!
//! serde writes `Vec<u8>` and `Box<[u8]>` as sequences of integers, up to two bytes on the wire
//! per byte, read back one integer at a time. MessagePack has a `bin` type for bytes, written and
//! read in one piece. The generated code writes every argument, result and stream item through
//! [`ToWire`], and reads arguments and results through [`FromWire`]; both pick bytes for those two
//! types by their `TypeId`. The choice is per type (the comparison of two constants folds away
//! when the code is compiled for that type), and it sees through type aliases, which the macro
//! cannot: a `type Blob = Vec<u8>` argument travels as bytes too.
//!
//! Reading accepts both forms: `ByteBuf` takes bytes or a sequence, so a peer that sends integers
//! is still understood, and rmp-serde reads `bin` into a plain `Vec<u8>` (one integer at a time),
//! which is how stream items arrive: the client decodes them without `FromWire`. JSON has no byte
//! type; there, bytes are an array of numbers in either form.

use std::any::{Any, TypeId};
use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

/// Writes the value it borrows in its wire form: as bytes if it is a `Vec<u8>` or a
/// `Box<[u8]>`, as serde writes it otherwise.
pub struct ToWire<'a, T>(pub &'a T);

impl<T: Serialize + 'static> Serialize for ToWire<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match byte_slice(self.0) {
            Some(bytes) => serializer.serialize_bytes(bytes),
            None => self.0.serialize(serializer),
        }
    }
}

impl<T> fmt::Debug for ToWire<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ToWire")
    }
}

/// Reads a value written by [`ToWire`] (or by serde directly); `.0` is the value.
pub struct FromWire<T>(pub T);

/// What a `#[rmif(failsafe)]` call returns when it gets no answer.
impl<T: Default> Default for FromWire<T> {
    fn default() -> Self {
        FromWire(T::default())
    }
}

impl<'de, T: DeserializeOwned + 'static> Deserialize<'de> for FromWire<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !is_byte_container::<T>() {
            return T::deserialize(deserializer).map(FromWire);
        }
        let bytes = ByteBuf::deserialize(deserializer)?.into_vec();
        from_bytes(bytes)
            .map(FromWire)
            .ok_or_else(|| D::Error::custom("a byte container of an unknown type"))
    }
}

impl<T> fmt::Debug for FromWire<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromWire")
    }
}

/// The types written as bytes; [`byte_slice`] and [`from_bytes`] handle exactly these.
fn is_byte_container<T: 'static>() -> bool {
    let id = TypeId::of::<T>();
    id == TypeId::of::<Vec<u8>>() || id == TypeId::of::<Box<[u8]>>()
}

/// `value`'s bytes if its type is written as bytes.
fn byte_slice<T: 'static>(value: &T) -> Option<&[u8]> {
    if !is_byte_container::<T>() {
        return None;
    }
    let value: &dyn Any = value;
    match value.downcast_ref::<Vec<u8>>() {
        Some(vec) => Some(vec),
        None => value.downcast_ref::<Box<[u8]>>().map(|boxed| &**boxed),
    }
}

/// `bytes` as a `T` that is written as bytes (`None` for any other type).
fn from_bytes<T: 'static>(bytes: Vec<u8>) -> Option<T> {
    let mut slot: Option<T> = None;
    let any: &mut dyn Any = &mut slot;
    if let Some(vec) = any.downcast_mut::<Option<Vec<u8>>>() {
        *vec = Some(bytes);
    } else if let Some(boxed) = any.downcast_mut::<Option<Box<[u8]>>>() {
        *boxed = Some(bytes.into_boxed_slice());
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serialization;

    fn msgpack<T: Serialize + 'static>(value: &T) -> Vec<u8> {
        let mut body = bytes::BytesMut::new();
        Serialization::MsgPack
            .encode(&ToWire(value), &mut body)
            .unwrap();
        body.to_vec()
    }

    fn read<T: DeserializeOwned + 'static>(body: &[u8]) -> T {
        Serialization::MsgPack
            .decode::<FromWire<T>>(body)
            .unwrap()
            .0
    }

    /// `bin 8` of length 3: marker 0xc4, the length, the bytes.
    const BIN_ABC: [u8; 5] = [0xc4, 3, b'a', b'b', b'c'];
    /// A fixarray of three positive fixints.
    const ARRAY_ABC: [u8; 4] = [0x93, b'a', b'b', b'c'];

    type Blob = Vec<u8>;

    #[test]
    fn byte_containers_are_written_as_bin_through_aliases_too() {
        assert_eq!(msgpack(&b"abc".to_vec()), BIN_ABC);
        assert_eq!(msgpack(&Box::<[u8]>::from(&b"abc"[..])), BIN_ABC);
        let blob: Blob = b"abc".to_vec();
        assert_eq!(msgpack(&blob), BIN_ABC);
    }

    #[test]
    fn other_types_are_written_as_serde_writes_them() {
        assert_eq!(msgpack(&vec![97u16, 98, 99]), ARRAY_ABC);
        assert_eq!(msgpack(b"abc"), ARRAY_ABC);
        assert_eq!(msgpack(&7u8), [7]);
    }

    #[test]
    fn byte_containers_read_bin_and_integer_arrays() {
        for body in [&BIN_ABC[..], &ARRAY_ABC[..]] {
            assert_eq!(read::<Vec<u8>>(body), b"abc");
            assert_eq!(&*read::<Box<[u8]>>(body), b"abc");
        }
        assert_eq!(read::<Vec<u16>>(&ARRAY_ABC), [97, 98, 99]);
    }

    #[test]
    fn a_byte_container_refuses_what_is_not_bytes() {
        // A map with one entry, 1 => 2.
        let read = Serialization::MsgPack.decode::<FromWire<Vec<u8>>>(&[0x81, 1, 2]);
        assert!(read.is_err());
    }
}
