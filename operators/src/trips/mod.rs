//! Trips: the state machine a market runs for each trip ([`state`]), and the trip step that
//! routes commands to markets and folds `trip.events` into a view per trip ([`router`]).

pub mod router;
pub mod state;
