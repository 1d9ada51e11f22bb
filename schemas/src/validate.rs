//! Semantic validation after decoding: ranges, signs and formats, each error naming its field.

use rust_decimal::Decimal;

use crate::SchemaError;

/// A record that can check its own values.
pub trait Validate: Sized + serde::de::DeserializeOwned {
    fn validate(&self) -> Result<(), SchemaError>;

    /// Decodes JSON, naming the offending field on error. Internally tagged enums override
    /// this: serde loses the field path inside them.
    fn from_json(bytes: &[u8]) -> Result<Self, SchemaError> {
        crate::codec::decode_tracked(bytes)
    }
}

/// Identifiers: 1..=128 printable characters, no whitespace.
pub(crate) fn id(field: &str, value: &str) -> Result<(), SchemaError> {
    if value.is_empty() {
        return Err(SchemaError::invalid(field, "must not be empty"));
    }
    if value.len() > 128 {
        return Err(SchemaError::invalid(field, "must be at most 128 bytes"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SchemaError::invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

pub(crate) fn latitude(field: &str, value: f64) -> Result<(), SchemaError> {
    if !value.is_finite() || !(-90.0..=90.0).contains(&value) {
        return Err(SchemaError::invalid(
            field,
            format!("latitude {value} is outside -90..=90"),
        ));
    }
    Ok(())
}

pub(crate) fn longitude(field: &str, value: f64) -> Result<(), SchemaError> {
    if !value.is_finite() || !(-180.0..=180.0).contains(&value) {
        return Err(SchemaError::invalid(
            field,
            format!("longitude {value} is outside -180..=180"),
        ));
    }
    Ok(())
}

/// A positive amount of money with at most two decimals.
pub(crate) fn positive_amount(field: &str, value: Decimal) -> Result<(), SchemaError> {
    if value <= Decimal::ZERO {
        return Err(SchemaError::invalid(
            field,
            format!("amount {value} must be positive"),
        ));
    }
    if value.normalize().scale() > 2 {
        return Err(SchemaError::invalid(
            field,
            format!("amount {value} has more than two decimals"),
        ));
    }
    if value > Decimal::from(1_000_000) {
        return Err(SchemaError::invalid(
            field,
            format!("amount {value} exceeds the limit of 1000000"),
        ));
    }
    Ok(())
}

pub(crate) fn optional_range(field: &str, value: Option<f64>, min: f64, max: f64) -> Result<(), SchemaError> {
    match value {
        Some(v) if !v.is_finite() || v < min || v > max => Err(SchemaError::invalid(
            field,
            format!("{v} is outside {min}..={max}"),
        )),
        _ => Ok(()),
    }
}
