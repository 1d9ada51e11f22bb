use fleetstream_schemas::{LedgerEntry, PostingKind, money::round2, time};
use rust_decimal::Decimal;

use super::Fare;
use crate::config::Tariff;

/// The platform's revenue account.
pub const PLATFORM_ACCOUNT: &str = "platform:revenue";
/// The clearing account that funds top-ups.
pub const TOP_UP_ACCOUNT: &str = "clearing:top_ups";

fn entry(
    txn: &str,
    account: String,
    amount: Decimal,
    kind: PostingKind,
    trip: Option<&str>,
    ts: i64,
) -> LedgerEntry {
    LedgerEntry {
        entry_id: format!("{txn}/{account}"),
        txn_id: txn.to_string(),
        account_id: account,
        amount,
        kind,
        trip_id: trip.map(str::to_string),
        ts: time::from_millis(ts),
    }
}

/// A completed trip's settlement (transaction id = trip id): the rider pays fare and booking
/// fee, the driver earns fare minus commission, the platform keeps commission and booking fee.
pub fn trip_postings(
    trip: &str,
    rider: &str,
    driver: &str,
    fare: &Fare,
    tariff: &Tariff,
    ts: i64,
) -> Vec<LedgerEntry> {
    let booking = tariff.booking_fee;
    vec![
        entry(
            trip,
            format!("rider:{rider}"),
            -(fare.fare + booking),
            PostingKind::Fare,
            Some(trip),
            ts,
        ),
        entry(
            trip,
            format!("driver:{driver}"),
            fare.fare - fare.commission,
            PostingKind::DriverEarnings,
            Some(trip),
            ts,
        ),
        entry(
            trip,
            PLATFORM_ACCOUNT.into(),
            fare.commission + booking,
            PostingKind::PlatformFee,
            Some(trip),
            ts,
        ),
    ]
}

/// A late rider cancellation (transaction id = trip id): the rider pays the fee, the driver
/// gets it minus commission, the platform the commission.
pub fn cancellation_postings(
    trip: &str,
    rider: &str,
    driver: &str,
    tariff: &Tariff,
    ts: i64,
) -> Vec<LedgerEntry> {
    let fee = tariff.cancellation_fee;
    let platform = round2(fee * tariff.commission);
    vec![
        entry(
            trip,
            format!("rider:{rider}"),
            -fee,
            PostingKind::CancellationFee,
            Some(trip),
            ts,
        ),
        entry(
            trip,
            format!("driver:{driver}"),
            fee - platform,
            PostingKind::CancellationCompensation,
            Some(trip),
            ts,
        ),
        entry(
            trip,
            PLATFORM_ACCOUNT.into(),
            platform,
            PostingKind::CancellationRevenue,
            Some(trip),
            ts,
        ),
    ]
}

/// A wallet top-up (transaction id = command id), funded by the clearing account.
pub fn top_up_postings(command: &str, account: &str, amount: Decimal, ts: i64) -> Vec<LedgerEntry> {
    vec![
        entry(command, account.to_string(), amount, PostingKind::TopUp, None, ts),
        entry(
            command,
            TOP_UP_ACCOUNT.into(),
            -amount,
            PostingKind::TopUpFunding,
            None,
            ts,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn sum(entries: &[LedgerEntry]) -> Decimal {
        entries.iter().map(|e| e.amount).sum()
    }

    #[test]
    fn every_transaction_sums_to_zero() {
        let t = Tariff::default();
        let settled = trip_postings(
            "t1",
            "r1",
            "d1",
            &Fare {
                fare: dec!(12.00),
                commission: dec!(2.40),
            },
            &t,
            0,
        );
        assert_eq!(sum(&settled), Decimal::ZERO);
        assert_eq!(settled[0].amount, dec!(-13.00));
        assert_eq!(settled[1].amount, dec!(9.60));
        assert_eq!(settled[2].amount, dec!(3.40));
        let cancelled = cancellation_postings("t2", "r1", "d1", &t, 0);
        assert_eq!(sum(&cancelled), Decimal::ZERO);
        assert_eq!(
            cancelled.iter().map(|e| e.amount).collect::<Vec<_>>(),
            vec![dec!(-5.00), dec!(4.00), dec!(1.00)]
        );
        assert_eq!(
            sum(&top_up_postings("c1", "rider:r1", dec!(20), 0)),
            Decimal::ZERO
        );
    }

    #[test]
    fn entry_ids_are_deterministic() {
        let t = Tariff::default();
        let a = trip_postings(
            "t1",
            "r1",
            "d1",
            &Fare {
                fare: dec!(6.00),
                commission: dec!(1.20),
            },
            &t,
            5,
        );
        let b = trip_postings(
            "t1",
            "r1",
            "d1",
            &Fare {
                fare: dec!(6.00),
                commission: dec!(1.20),
            },
            &t,
            5,
        );
        assert_eq!(a, b);
        assert_eq!(a[0].entry_id, "t1/rider:r1");
    }
}
