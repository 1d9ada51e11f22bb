//! `airport_surcharge(pickup_lat, pickup_lng, fare_cents)`: a fleetstream SQL UDF plugin.
//!
//! Trips picked up within [`RADIUS_KM`] of Berlin Brandenburg airport (BER) pay a flat
//! [`SURCHARGE_CENTS`] on top of the fare. Money crosses the plugin boundary as integer cents
//! (the ABI has no decimals, and money is never a float):
//!
//! ```sql
//! SELECT trip_id,
//!        airport_surcharge(pickup_lat, pickup_lng, CAST(fare * 100 AS BIGINT)) / 100.0 AS charged
//! FROM trips WHERE status = 'completed'
//! ```
//!
//! NULLs: an unknown pickup position (either coordinate NULL) adds no surcharge; a NULL fare gives
//! NULL.

use arroyo_udf_plugin::udf;

include!(concat!(env!("OUT_DIR"), "/fleetstream_udf.rs"));

/// BER terminal 1, degrees.
pub const BER_LAT: f64 = 52.3667;
/// BER terminal 1, degrees.
pub const BER_LNG: f64 = 13.5033;
/// Pickups closer than this to [`BER_LAT`]/[`BER_LNG`] count as airport pickups.
pub const RADIUS_KM: f64 = 3.0;
/// Flat amount added to the fare of an airport pickup, in cents of the fare's currency.
pub const SURCHARGE_CENTS: i64 = 500;

/// Mean earth radius, the same as the host's `fleetstream_operators::geo::EARTH_RADIUS_KM`.
const EARTH_RADIUS_KM: f64 = 6371.0088;

#[udf]
fn airport_surcharge(pickup_lat: Option<f64>, pickup_lng: Option<f64>, fare_cents: i64) -> i64 {
    let at_airport = match (pickup_lat, pickup_lng) {
        (Some(lat), Some(lng)) => haversine_km(lat, lng, BER_LAT, BER_LNG) <= RADIUS_KM,
        _ => false,
    };
    if at_airport {
        fare_cents.saturating_add(SURCHARGE_CENTS)
    } else {
        fare_cents
    }
}

/// Great-circle distance in km.
fn haversine_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surcharges_airport_pickups_only() {
        assert_eq!(airport_surcharge(Some(52.3667), Some(13.5033), 4210), 4710);
        assert_eq!(airport_surcharge(Some(52.38), Some(13.52), 4210), 4710);
        // Alexanderplatz.
        assert_eq!(airport_surcharge(Some(52.5219), Some(13.4132), 1235), 1235);
        assert_eq!(airport_surcharge(None, Some(13.5033), 4210), 4210);
    }
}
