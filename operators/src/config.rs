//! The jobs' rules as configuration: matching, tariffs per vehicle class, overtime policy.
//! Every key is optional; defaults are DESIGN.md's.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

/// All rules of the ride and overtime jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobConfig {
    /// Prefixed to every topic name (`staging.` makes `staging.gps.pings`), so that several
    /// deployments can share one cluster.
    pub topic_prefix: String,
    pub matching: MatchingConfig,
    /// Tariff per vehicle class; a class without a tariff cannot be requested.
    pub tariff: BTreeMap<String, Tariff>,
    pub overtime: OvertimeConfig,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            topic_prefix: String::new(),
            matching: MatchingConfig::default(),
            tariff: BTreeMap::from([("economy".to_string(), Tariff::default())]),
            overtime: OvertimeConfig::default(),
        }
    }
}

/// DESIGN.md §4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingConfig {
    /// Candidates lie within this great-circle distance of the pickup.
    pub radius_km: f64,
    /// An offer not answered within this time passes to the next candidate.
    #[serde(with = "humantime_serde")]
    pub offer_timeout: Duration,
    /// After this many offers the trip ends as `no_driver`.
    pub max_offers: u32,
    /// A driver whose last ping is older than this at request time is not available.
    #[serde(with = "humantime_serde")]
    pub ping_freshness: Duration,
    /// H3 resolution of markets, the unit of partitioning of matching (coarse: 3..=6).
    pub market_resolution: u8,
    /// Demand for surge counts requests in this window up to the request.
    #[serde(with = "humantime_serde")]
    pub surge_window: Duration,
    /// Surge multiplier bounds.
    pub surge_min: Decimal,
    pub surge_max: Decimal,
    /// A rider cancelling longer than this after the match pays the cancellation fee.
    #[serde(with = "humantime_serde")]
    pub free_cancellation: Duration,
}

impl Default for MatchingConfig {
    fn default() -> Self {
        MatchingConfig {
            radius_km: 5.0,
            offer_timeout: Duration::from_secs(15),
            max_offers: 3,
            ping_freshness: Duration::from_secs(30),
            market_resolution: 5,
            surge_window: Duration::from_secs(300),
            surge_min: Decimal::ONE,
            surge_max: Decimal::from(3),
            free_cancellation: Duration::from_secs(120),
        }
    }
}

/// DESIGN.md §5, per vehicle class. Amounts are decimals; TOML may give them as strings
/// (`"2.50"`) or numbers (`2.50`, read through their decimal text, never as binary floats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tariff {
    #[serde(deserialize_with = "decimal")]
    pub base: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub per_km: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub per_minute: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub minimum: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub booking_fee: Decimal,
    /// Platform share of the fare, e.g. `0.20`.
    #[serde(deserialize_with = "decimal")]
    pub commission: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub cancellation_fee: Decimal,
}

impl Default for Tariff {
    fn default() -> Self {
        Tariff {
            base: Decimal::new(250, 2),
            per_km: Decimal::new(120, 2),
            per_minute: Decimal::new(30, 2),
            minimum: Decimal::new(600, 2),
            booking_fee: Decimal::new(100, 2),
            commission: Decimal::new(20, 2),
            cancellation_fee: Decimal::new(500, 2),
        }
    }
}

fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        Float(f64),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Text(t) => t,
        Raw::Int(i) => i.to_string(),
        // Rust prints the shortest decimal that reads back as the same f64: what was written.
        Raw::Float(f) => f.to_string(),
    };
    fleetstream_schemas::money::parse(&text).map_err(serde::de::Error::custom)
}

/// Local times of day as `HH:MM` (or `HH:MM:SS`).
mod clock_time {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(&text, "%H:%M:%S"))
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a time of day such as \"22:00\"")))
    }
}

/// DESIGN.md §6, per collective agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OvertimeConfig {
    /// IANA time zone of the depot: days, weeks, nights and holidays are local.
    pub timezone: chrono_tz::Tz,
    pub holidays: Vec<NaiveDate>,
    /// How long after a day or week ends late punches are still accepted.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Worked minutes per day before daily overtime.
    pub daily_regular_minutes: i64,
    /// Daily overtime minutes paid at 150 % before the rest is paid at 200 %.
    pub daily_ot_150_minutes: i64,
    /// Regular minutes per week before weekly overtime.
    pub weekly_regular_minutes: i64,
    /// A week with more worked minutes is flagged `week_over_48h`.
    pub weekly_max_minutes: i64,
    /// A shift starting sooner after the previous clock-out is flagged `short_rest`.
    #[serde(with = "humantime_serde")]
    pub min_rest: Duration,
    /// Night work starts (local, `HH:MM`).
    #[serde(with = "clock_time")]
    pub night_start: NaiveTime,
    #[serde(with = "clock_time")]
    pub night_end: NaiveTime,
}

impl Default for OvertimeConfig {
    fn default() -> Self {
        OvertimeConfig {
            timezone: chrono_tz::UTC,
            holidays: Vec::new(),
            grace: Duration::from_secs(7 * 24 * 3600),
            daily_regular_minutes: 480,
            daily_ot_150_minutes: 120,
            weekly_regular_minutes: 2400,
            weekly_max_minutes: 2880,
            min_rest: Duration::from_secs(11 * 3600),
            night_start: NaiveTime::from_hms_opt(22, 0, 0).expect("valid time"),
            night_end: NaiveTime::from_hms_opt(6, 0, 0).expect("valid time"),
        }
    }
}

impl JobConfig {
    /// The full name of one of the default topics (`fleetstream_schemas::topics`).
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// Checks values serde cannot: ranges and consistency. Returns `field: reason` errors.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.matching;
        if !(m.radius_km > 0.0 && m.radius_km <= 50.0) {
            return Err(format!("matching.radius_km: {} is outside (0, 50]", m.radius_km));
        }
        if m.max_offers == 0 {
            return Err("matching.max_offers: must be at least 1".into());
        }
        if !(3..=6).contains(&m.market_resolution) {
            return Err(format!(
                "matching.market_resolution: {} is outside 3..=6",
                m.market_resolution
            ));
        }
        if m.surge_min > m.surge_max || m.surge_min <= Decimal::ZERO {
            return Err("matching.surge_min/surge_max: need 0 < surge_min <= surge_max".into());
        }
        if self.tariff.is_empty() {
            return Err("tariff: at least one vehicle class needs a tariff".into());
        }
        for (class, t) in &self.tariff {
            if t.commission < Decimal::ZERO || t.commission > Decimal::ONE {
                return Err(format!(
                    "tariff.{class}.commission: {} is outside 0..=1",
                    t.commission
                ));
            }
            for (name, v) in [
                ("base", t.base),
                ("per_km", t.per_km),
                ("per_minute", t.per_minute),
                ("minimum", t.minimum),
                ("booking_fee", t.booking_fee),
                ("cancellation_fee", t.cancellation_fee),
            ] {
                if v < Decimal::ZERO {
                    return Err(format!("tariff.{class}.{name}: {v} is negative"));
                }
            }
        }
        let o = &self.overtime;
        if o.daily_regular_minutes < 0 || o.daily_ot_150_minutes < 0 || o.weekly_regular_minutes < 0 {
            return Err("overtime: minute thresholds must not be negative".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_design_defaults() {
        let config: JobConfig = toml::from_str("").unwrap();
        assert_eq!(config, JobConfig::default());
        assert_eq!(config.tariff["economy"].minimum, Decimal::new(600, 2));
    }

    #[test]
    fn sample_depot_config_parses() {
        let config: JobConfig = toml::from_str(
            "[overtime]\ntimezone = \"Europe/Berlin\"\nholidays = [\"2026-10-31\", \"2026-11-01\"]\ngrace = \"7d\"\n",
        )
        .unwrap();
        assert_eq!(config.overtime.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(config.overtime.holidays.len(), 2);
        assert_eq!(config.overtime.grace, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn tariff_amounts_read_as_decimals_from_numbers_or_strings() {
        let config: JobConfig =
            toml::from_str("[tariff.comfort]\nbase = 3.10\nper_km = \"1.55\"\nminimum = 8\n").unwrap();
        let comfort = &config.tariff["comfort"];
        assert_eq!(comfort.base, Decimal::new(310, 2));
        assert_eq!(comfort.per_km, Decimal::new(155, 2));
        assert_eq!(comfort.minimum, Decimal::from(8));
        assert_eq!(comfort.per_minute, Tariff::default().per_minute);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<JobConfig>("[matching]\nradius = 3\n").unwrap_err();
        assert!(err.to_string().contains("radius"), "{err}");
    }
}
