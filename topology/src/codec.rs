//! Codecs between typed values and bytes, for topics and stores.
//!
//! A codec is two plain functions, so that a topology can name them statically and every task
//! shares them without allocation. Store keys are compared as encoded bytes: pick a key codec
//! whose byte order is the order you range-scan in (UTF-8 strings and big-endian integers are).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes did not decode, naming the offending field (`$` for the whole record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub field: String,
    pub message: String,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Encodes and decodes values of `T`.
pub struct Codec<T> {
    encode: fn(&T, &mut Vec<u8>),
    decode: fn(&[u8]) -> Result<T, DecodeError>,
}

impl<T> Codec<T> {
    pub const fn new(encode: fn(&T, &mut Vec<u8>), decode: fn(&[u8]) -> Result<T, DecodeError>) -> Self {
        Codec { encode, decode }
    }

    pub fn encode(&self, value: &T, out: &mut Vec<u8>) {
        (self.encode)(value, out)
    }

    pub fn to_vec(&self, value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        (self.encode)(value, &mut out);
        out
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        (self.decode)(bytes)
    }
}

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Codec<T> {}

impl<T> std::fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

/// A key and a value codec.
pub type Codecs<K, V> = (Codec<K>, Codec<V>);

/// UTF-8 strings as their bytes.
pub fn string() -> Codec<String> {
    Codec::new(
        |s, out| out.extend_from_slice(s.as_bytes()),
        |b| String::from_utf8(b.to_vec()).map_err(|_| DecodeError::new("$", "key is not UTF-8")),
    )
}

/// Raw bytes.
pub fn bytes() -> Codec<Vec<u8>> {
    Codec::new(|b, out| out.extend_from_slice(b), |b| Ok(b.to_vec()))
}

/// The empty value (presence only).
pub fn unit() -> Codec<()> {
    Codec::new(|_, _| {}, |_| Ok(()))
}

/// Signed integers, big-endian with the sign bit flipped so that byte order is numeric order.
pub fn ordered_i64() -> Codec<i64> {
    Codec::new(
        |v, out| out.extend_from_slice(&((*v as u64) ^ (1 << 63)).to_be_bytes()),
        |b| {
            let arr: [u8; 8] = b
                .try_into()
                .map_err(|_| DecodeError::new("$", "expected 8 bytes"))?;
            Ok((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
        },
    )
}

/// Compact binary (postcard) for internal records and store values.
pub fn postcard<T: Serialize + DeserializeOwned>() -> Codec<T> {
    Codec::new(encode_postcard::<T>, decode_postcard::<T>)
}

/// JSON via serde, without further validation.
pub fn json<T: Serialize + DeserializeOwned>() -> Codec<T> {
    Codec::new(encode_json::<T>, decode_json::<T>)
}

fn encode_postcard<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Most of our values fit: one allocation instead of a few growing ones.
    out.reserve(64);
    // Our internal types have no maps with non-string keys or failing impls.
    postcard::serialize_with_flavor(value, AppendTo(out)).expect("postcard encoding of an internal type");
}

/// Postcard output appended to a vector in place (its own `to_stdvec` grows a fresh vector
/// from nothing, which the caller then copies).
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn decode_postcard<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    postcard::from_bytes(bytes).map_err(|e| DecodeError::new("$", e.to_string()))
}

/// Serializes `value` as JSON into `out`.
pub fn encode_json<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("JSON encoding of a record type");
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::new("$", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_i64_preserves_order() {
        let c = ordered_i64();
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let encoded: Vec<Vec<u8>> = values.iter().map(|v| c.to_vec(v)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        for (v, e) in values.iter().zip(&encoded) {
            assert_eq!(c.decode(e).unwrap(), *v);
        }
    }

    #[test]
    fn postcard_appends_what_postcard_writes() {
        let c = postcard::<(String, Vec<u64>, Option<f64>)>();
        let value = ("driver-7".to_string(), vec![1, 300, u64::MAX], Some(52.5));
        let mut out = b"prefix".to_vec();
        c.encode(&value, &mut out);
        let mut expected = b"prefix".to_vec();
        expected.extend(::postcard::to_stdvec(&value).unwrap());
        assert_eq!(out, expected);
        assert_eq!(c.decode(&out[6..]).unwrap(), value);
    }
}
