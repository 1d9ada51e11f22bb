//! Surge pricing (DESIGN.md §5): demand over supply in the pickup's resolution-7 cell.

use rust_decimal::{Decimal, RoundingStrategy};

/// `demand / max(1, supply)`, rounded down to one decimal, clamped to `[min, max]`.
pub fn multiplier(demand: usize, supply: usize, min: Decimal, max: Decimal) -> Decimal {
    let ratio = Decimal::from(demand as u64) / Decimal::from(supply.max(1) as u64);
    let mut surge = ratio
        .round_dp_with_strategy(1, RoundingStrategy::ToZero)
        .clamp(min, max);
    surge.rescale(1);
    surge
}

/// Keeps the request times of the window `(at - window, at]` and adds `at`; returns the demand.
pub fn record_request(times: &mut Vec<i64>, at: i64, window_ms: i64) -> usize {
    times.retain(|&t| t > at - window_ms && t <= at);
    times.push(at);
    times.sort_unstable();
    times.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(demand: usize, supply: usize) -> String {
        multiplier(demand, supply, Decimal::ONE, Decimal::from(3)).to_string()
    }

    #[test]
    fn rounds_down_and_clamps() {
        assert_eq!(m(1, 5), "1.0");
        assert_eq!(m(2, 1), "2.0");
        assert_eq!(m(5, 3), "1.6");
        assert_eq!(m(7, 0), "3.0");
        assert_eq!(m(3, 0), "3.0");
        assert_eq!(m(2, 0), "2.0");
    }

    #[test]
    fn demand_window_is_half_open() {
        let mut times = vec![0, 100_000, 200_000];
        assert_eq!(
            record_request(&mut times, 300_000, 300_000),
            3,
            "a request exactly 5 min earlier is out"
        );
        assert_eq!(times, vec![100_000, 200_000, 300_000]);
    }
}
