use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::config::Tariff;
use fleetstream_schemas::money::round2;

/// A priced trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Fare {
    pub fare: Decimal,
    pub commission: Decimal,
}

/// `round2(max(minimum, base + per_km·km + per_minute·minutes) · surge)`, commission
/// `round2(fare · commission)`. Minutes are exact: milliseconds / 60 000.
pub fn fare(tariff: &Tariff, distance_km: f64, duration_ms: i64, surge: Decimal) -> Fare {
    let km = Decimal::from_f64(distance_km).unwrap_or_default();
    let minutes = Decimal::from(duration_ms.max(0)) / Decimal::from(60_000);
    let metered = tariff.base + tariff.per_km * km + tariff.per_minute * minutes;
    let fare = round2(metered.max(tariff.minimum) * surge);
    let commission = round2(fare * tariff.commission);
    Fare { fare, commission }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn a_short_trip_pays_the_minimum_times_surge() {
        // 1.017 km in 72 s at surge 2.0: metered 4.08 < 6.00, so 6.00 x 2.0.
        let f = fare(&Tariff::default(), 1.017, 72_000, dec!(2.0));
        assert_eq!(f.fare, dec!(12.00));
        assert_eq!(f.commission, dec!(2.40));
    }

    #[test]
    fn a_metered_trip_rounds_half_away_from_zero() {
        // 2.50 + 1.20 x 3.1209 + 0.30 x 52/60 = 6.50508 -> 6.51
        let f = fare(&Tariff::default(), 3.1209, 52_000, dec!(1.0));
        assert_eq!(f.fare, dec!(6.51));
        assert_eq!(f.commission, dec!(1.30));
    }
}
