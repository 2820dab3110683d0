//! Reading an encoded message field by field where it lies, without decoding it: the
//! host checks an answer's shape this way before decoding it, and plugins read events in
//! place ([`crate::EventView`]). And writing length-delimited fields without building
//! their messages: the host encodes events this way and plugins their kept events.

use std::fmt;

use prost::encoding::{WireType, decode_key, decode_varint, encode_varint, encoded_len_varint};

/// What a field holds, as it lies in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A varint (integers, booleans, enums).
    Varint(u64),
    /// A length-delimited payload (strings, bytes, messages, packed repeated fields).
    Bytes(&'a [u8]),
    /// A fixed-width 32- or 64-bit value, which the contract's messages do not use.
    Fixed,
}

/// Bytes that are not an encoded protobuf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(String);

impl Malformed {
    /// Says what is wrong with the bytes.
    pub fn new(reason: impl fmt::Display) -> Self {
        Self(reason.to_string())
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// The fields of the encoded `message`, in order, each with its tag; the walk ends at
/// the first malformed field, which it yields as an error.
pub fn fields(message: &[u8]) -> Fields<'_> {
    Fields { rest: message }
}

/// The iterator of [`fields`].
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Malformed>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.read();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    #[inline(always)]
    fn read(&mut self) -> Result<(u32, Value<'a>), Malformed> {
        let (tag, wire_type) = self.key()?;
        let value = match wire_type {
            WireType::Varint => Value::Varint(self.varint()?),
            WireType::LengthDelimited => {
                let len = self.varint()?;
                match usize::try_from(len) {
                    Ok(len) if len <= self.rest.len() => {
                        let (payload, rest) = self.rest.split_at(len);
                        self.rest = rest;
                        Value::Bytes(payload)
                    }
                    _ => return Err(past_the_end()),
                }
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => self.skip_fixed(wire_type)?,
            WireType::StartGroup | WireType::EndGroup => {
                return Err(Malformed::new("groups are not part of the schema"));
            }
        };
        Ok((tag, value))
    }

    /// The next field's tag and wire type. A one-byte key of a varint or
    /// length-delimited field (tags 1 to 15: every field of the contract) is read here,
    /// in line; any other goes through prost, which also words the errors.
    #[inline]
    fn key(&mut self) -> Result<(u32, WireType), Malformed> {
        if let Some((&key, rest)) = self.rest.split_first()
            && (8..0x80).contains(&key)
        {
            let wire_type = match key & 7 {
                0 => Some(WireType::Varint),
                2 => Some(WireType::LengthDelimited),
                _ => None,
            };
            if let Some(wire_type) = wire_type {
                self.rest = rest;
                return Ok((u32::from(key >> 3), wire_type));
            }
        }
        self.other_key()
    }

    #[cold]
    #[inline(never)]
    fn other_key(&mut self) -> Result<(u32, WireType), Malformed> {
        decode_key(&mut self.rest).map_err(Malformed::new)
    }

    /// The next varint. A one-byte varint (below 128: most lengths) is read here, in
    /// line; a longer one goes through prost.
    #[inline]
    fn varint(&mut self) -> Result<u64, Malformed> {
        if let Some((&byte, rest)) = self.rest.split_first()
            && byte < 0x80
        {
            self.rest = rest;
            return Ok(u64::from(byte));
        }
        self.long_varint()
    }

    #[cold]
    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, Malformed> {
        decode_varint(&mut self.rest).map_err(Malformed::new)
    }

    #[cold]
    #[inline(never)]
    fn skip_fixed(&mut self, wire_type: WireType) -> Result<Value<'a>, Malformed> {
        let width = if wire_type == WireType::SixtyFourBit {
            8
        } else {
            4
        };
        self.rest = self.rest.get(width..).ok_or_else(past_the_end)?;
        Ok(Value::Fixed)
    }
}

#[cold]
fn past_the_end() -> Malformed {
    Malformed::new("a field runs past the end")
}

impl<'a> Value<'a> {
    /// The payload of a length-delimited field; empty for any other.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Value::Bytes(bytes) => bytes,
            Value::Varint(_) | Value::Fixed => &[],
        }
    }
}

/// The one-byte key of field `tag` (below 16, as all of the contract's are) of `wire_type`.
#[inline]
pub fn key(tag: u8, wire_type: WireType) -> u8 {
    debug_assert!(tag < 16, "field {tag} needs a longer key");
    (tag << 3) | wire_type as u8
}

/// Encoded size of a length-delimited field of `len` bytes with a one-byte key.
#[inline]
pub fn delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Appends the key of length-delimited field `tag` (below 16) and its length `len`.
#[inline]
pub fn put_len(tag: u8, len: usize, buffer: &mut Vec<u8>) {
    buffer.push(key(tag, WireType::LengthDelimited));
    match u8::try_from(len) {
        Ok(len) if len < 0x80 => buffer.push(len),
        _ => encode_varint(len as u64, buffer),
    }
}

/// Appends length-delimited field `tag` (below 16) holding `bytes`.
#[inline]
pub fn put_bytes(tag: u8, bytes: &[u8], buffer: &mut Vec<u8>) {
    put_len(tag, bytes.len(), buffer);
    buffer.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attribute, Event};
    use prost::Message;

    #[test]
    fn walks_the_fields_of_a_message_in_order() {
        let event = Event {
            id: "m-1".into(),
            timestamp_ms: 300,
            attributes: vec![Attribute {
                name: "a".into(),
                value: "b".into(),
            }],
            ..Event::default()
        }
        .encode_to_vec();
        let walked: Vec<_> = fields(&event)
            .collect::<Result<_, _>>()
            .expect("well formed");
        assert_eq!(walked[0], (1, Value::Bytes(b"m-1")));
        assert_eq!(walked[1], (3, Value::Varint(300)));
        assert_eq!(walked[2].0, 6);
        let attribute: Vec<_> = fields(walked[2].1.bytes()).map(Result::unwrap).collect();
        assert_eq!(
            attribute,
            [(1, Value::Bytes(b"a")), (2, Value::Bytes(b"b"))]
        );
    }

    #[test]
    fn a_truncated_message_ends_the_walk_with_an_error() {
        let event = Event {
            id: "m-1".into(),
            ..Event::default()
        }
        .encode_to_vec();
        let mut walk = fields(&event[..event.len() - 1]);
        let error = walk.next().expect("one item").unwrap_err();
        assert!(error.to_string().contains("past the end"), "{error}");
        assert!(walk.next().is_none());
        assert!(fields(&[0xff, 0xff]).next().unwrap().is_err());
    }

    #[test]
    fn keys_and_lengths_of_several_bytes_read_like_one_byte_ones() {
        // Field 16 needs a two-byte key; a 300-byte string a two-byte length.
        let long = "x".repeat(300);
        let mut bytes = Vec::new();
        prost::encoding::string::encode(16, &long, &mut bytes);
        prost::encoding::uint64::encode(2, &u64::MAX, &mut bytes);
        prost::encoding::string::encode(1, &"é".to_owned(), &mut bytes);
        let walked: Vec<_> = fields(&bytes)
            .collect::<Result<_, _>>()
            .expect("well formed");
        assert_eq!(
            walked,
            [
                (16, Value::Bytes(long.as_bytes())),
                (2, Value::Varint(u64::MAX)),
                (1, Value::Bytes("é".as_bytes())),
            ]
        );
    }

    #[test]
    fn a_malformed_key_is_an_error() {
        for (bytes, expected) in [
            (&[0x00, 0x01][..], "tag"),       // field 0
            (&[0x07, 0x01][..], "wire type"), // field 0, wire type 7
            (&[0x0e, 0x01][..], "wire type"), // field 1, wire type 6
            (&[0x0b][..], "groups"),          // field 1, a group
        ] {
            let error = fields(bytes).next().expect("one item").unwrap_err();
            assert!(error.to_string().contains(expected), "{bytes:?}: {error}");
        }
    }
}
