//! Fares and settlement (DESIGN.md §5): the fare of a completed trip, the postings of a trip's
//! settlement, of a late cancellation and of a top-up — each transaction summing to zero, all
//! in `rust_decimal` — and the wallets that sum postings into balances.

mod fare;
mod postings;
pub mod wallet;

pub use self::fare::{Fare, fare};
pub use self::postings::{
    PLATFORM_ACCOUNT, TOP_UP_ACCOUNT, cancellation_postings, top_up_postings, trip_postings,
};
