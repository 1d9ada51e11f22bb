//! JSON decoding with field-precise errors, and encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{SchemaError, Validate};

/// Decodes and validates one record from JSON bytes.
pub fn decode<T: Validate>(bytes: &[u8]) -> Result<T, SchemaError> {
    let value = T::from_json(bytes)?;
    value.validate()?;
    Ok(value)
}

/// Decodes and validates one record from an already parsed JSON value.
pub fn decode_value<T: Validate>(value: serde_json::Value) -> Result<T, SchemaError> {
    decode(&serde_json::to_vec(&value).expect("values serialize"))
}

/// Plain serde decoding that names the offending field.
///
/// A well-formed record is decoded once, without tracking: the tracking deserializer keeps
/// every key it passes as an owned string, which costs more than the decoding itself. Only a
/// record that fails is decoded again, tracked, to find the field (both passes see the same
/// bytes, so they fail alike).
pub(crate) fn decode_tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SchemaError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end().map_err(|e| SchemaError::malformed("$", e.to_string()))?;
    Ok(value)
}

/// Decodes an internally tagged record (`{"type": ..., ...}`): reads the tag, then the body
/// as the variant's own struct, so that errors inside still name their field.
pub(crate) fn decode_tagged<T>(
    bytes: &[u8],
    variants: &[&str],
    body: impl FnOnce(&str, &[u8]) -> Result<T, SchemaError>,
) -> Result<T, SchemaError> {
    #[derive(serde::Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        tag: Option<String>,
    }
    let tag: Tag = decode_tracked(bytes)?;
    let Some(tag) = tag.tag else {
        return Err(SchemaError::malformed("type", "required field is missing"));
    };
    if !variants.contains(&tag.as_str()) {
        let expected = variants
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SchemaError::malformed(
            "type",
            format!("unknown variant `{tag}`, expected one of {expected}"),
        ));
    }
    body(&tag, bytes)
}

/// Encodes a record as compact JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our types serialize infallibly: no maps with non-string keys, no failing Serialize impls.
    serde_json::to_vec(value).expect("record types always serialize")
}

fn path_error<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> SchemaError {
    let path = err.path().to_string();
    let inner = err.into_inner().to_string();
    // serde_json appends " at line L column C"; the field path says more.
    let message = match inner.find(" at line ") {
        Some(pos) => inner[..pos].to_string(),
        None => inner,
    };
    // A missing field is reported at its parent; name the field itself.
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.strip_suffix('`')
    {
        let field = if path == "." {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return SchemaError::malformed(field, "required field is missing");
    }
    let field = if path == "." || path == "?" {
        "$".to_string()
    } else {
        path
    };
    SchemaError::malformed(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GpsPing;

    #[test]
    fn not_json_is_reported_on_the_record() {
        let err = decode::<GpsPing>(b"{not json").unwrap_err();
        assert_eq!(err.field(), "$");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = decode::<GpsPing>(
            br#"{"event_id":"p","driver_id":"d","lat":1,"lng":2,"ts":"2026-01-01T00:00:00Z"} x"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "$");
    }

    #[test]
    fn missing_field_names_the_field() {
        let err = decode::<GpsPing>(br#"{"event_id":"p","driver_id":"d","lat":1,"lng":2}"#).unwrap_err();
        assert_eq!(err.field(), "ts");
        assert_eq!(err.message(), "required field is missing");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = decode::<GpsPing>(
            br#"{"event_id":"p","driver_id":"d","lat":"north","lng":2,"ts":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "lat");
    }
}
