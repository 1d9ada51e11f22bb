//! Timestamps: RFC 3339 with an offset on the wire, UTC instants in memory.
//!
//! Input may carry any offset (`+01:00`, `Z`); it is normalised to UTC on decoding, so the same
//! instant always compares and serializes the same way. A timestamp with no offset is rejected:
//! local wall-clock time without a zone is ambiguous.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserializer, Serializer};

/// An instant in time, zone-aware.
pub type Timestamp = DateTime<Utc>;

/// Parses an RFC 3339 timestamp that must carry an offset.
pub fn parse(text: &str) -> Result<Timestamp, String> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) if NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok() => Err(format!(
            "timestamp {text:?} has no UTC offset; RFC 3339 with an offset is required, e.g. 2026-11-02T07:00:00Z"
        )),
        Err(_) => Err(format!(
            "{text:?} is not an RFC 3339 timestamp, e.g. 2026-11-02T07:00:00Z"
        )),
    }
}

/// Formats an instant as RFC 3339 in UTC with milliseconds: `2026-11-02T07:00:00.000Z`.
pub fn format(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch, the unit of event time in the runtime.
pub fn to_millis(ts: &Timestamp) -> i64 {
    ts.timestamp_millis()
}

/// The instant at `millis` since the Unix epoch.
pub fn from_millis(millis: i64) -> Timestamp {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `#[serde(with = "fleetstream_schemas::time::rfc3339")]` for [`Timestamp`] fields.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
    }

    /// Parses the text where the deserializer holds it (serde's `Cow<str>` would copy it).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 timestamp with a UTC offset")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                parse(text).map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalise_to_utc() {
        let a = parse("2026-11-02T08:00:00+01:00").unwrap();
        let b = parse("2026-11-02T07:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(format(&a), "2026-11-02T07:00:00.000Z");
    }

    #[test]
    fn missing_offset_is_explained() {
        let err = parse("2026-11-02T07:00:00").unwrap_err();
        assert!(err.contains("no UTC offset"), "{err}");
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct At {
        #[serde(with = "super::rfc3339")]
        ts: Timestamp,
    }

    /// Read in place from JSON (with and without escapes in the text) and from postcard, as
    /// stores hold it; anything but text is refused with what was expected.
    #[test]
    fn timestamps_decode_from_json_and_postcard() {
        let want = At {
            ts: parse("2026-11-02T07:00:00Z").unwrap(),
        };
        let plain: At = serde_json::from_str(r#"{"ts":"2026-11-02T08:00:00+01:00"}"#).unwrap();
        assert_eq!(plain, want);
        let escaped: At = serde_json::from_str(r#"{"ts":"2026-11-02T08:00:00\u002B01:00"}"#).unwrap();
        assert_eq!(escaped, want);
        let stored = postcard::to_stdvec(&want).unwrap();
        assert_eq!(postcard::from_bytes::<At>(&stored).unwrap(), want);
        let err = serde_json::from_str::<At>(r#"{"ts":1762066800000}"#).unwrap_err();
        assert!(err.to_string().contains("an RFC 3339 timestamp"), "{err}");
        let err = serde_json::from_str::<At>(r#"{"ts":"2026-11-02T07:00:00"}"#).unwrap_err();
        assert!(err.to_string().contains("no UTC offset"), "{err}");
    }

    #[test]
    fn millis_round_trip() {
        let t = parse("2026-11-02T07:01:03.305Z").unwrap();
        assert_eq!(from_millis(to_millis(&t)), t);
    }
}
