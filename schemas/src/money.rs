//! Money and other exact decimals: `rust_decimal`, decimal strings on the wire, never floats.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserializer, Serializer};

/// Rounds to cents, half away from zero (DESIGN.md §5 `round2`).
pub fn round2(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Formats with exactly `scale` decimals: `6` -> `"6.00"`.
pub fn format_scaled(amount: Decimal, scale: u32) -> String {
    let mut value = amount.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    value.rescale(scale);
    value.to_string()
}

/// Parses a decimal string; rejects floats-as-numbers, exponents and empty strings.
pub fn parse(text: &str) -> Result<Decimal, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains(['e', 'E']) {
        return Err(format!("{text:?} is not a decimal string such as \"12.35\""));
    }
    trimmed
        .parse::<Decimal>()
        .map_err(|_| format!("{text:?} is not a decimal string such as \"12.35\""))
}

struct DecimalString;

impl serde::de::Visitor<'_> for DecimalString {
    type Value = Decimal;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a decimal string such as \"12.35\" (numbers are not accepted for money)")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse(v).map_err(E::custom)
    }
}

/// `#[serde(with = "fleetstream_schemas::money::cents")]`: amounts with two decimals.
pub mod cents {
    use super::*;

    pub fn serialize<S: Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_scaled(*amount, 2))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_str(DecimalString)
    }
}

/// `#[serde(with = "fleetstream_schemas::money::tenths")]`: multipliers with one decimal (surge).
pub mod tenths {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_scaled(*value, 1))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_str(DecimalString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn round2_is_half_away_from_zero() {
        assert_eq!(round2(dec!(2.345)), dec!(2.35));
        assert_eq!(round2(dec!(-2.345)), dec!(-2.35));
        assert_eq!(round2(dec!(2.344)), dec!(2.34));
    }

    #[test]
    fn formats_with_fixed_scale() {
        assert_eq!(format_scaled(dec!(6), 2), "6.00");
        assert_eq!(format_scaled(dec!(-7.5), 2), "-7.50");
        assert_eq!(format_scaled(dec!(2), 1), "2.0");
    }

    #[test]
    fn parse_rejects_exponents_and_blanks() {
        assert!(parse("1e3").is_err());
        assert!(parse(" ").is_err());
        assert_eq!(parse("12.35").unwrap(), dec!(12.35));
    }
}
