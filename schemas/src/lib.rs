//! Every record that crosses a topic in fleetstream: events, commands and results.
//!
//! This crate owns the wire contract (DESIGN.md §3): the serde types and their exact JSON forms,
//! validation that names the offending field, topic names, and an Arrow schema for each result
//! type. Money is [`rust_decimal::Decimal`] and travels as a decimal string; time is a
//! zone-aware [`chrono::DateTime`] and travels as RFC 3339 with an offset.
//!
//! Data flows through it in one direction: bytes from a topic are decoded and validated with
//! [`decode`], the processors work on the typed values, and results are encoded back to JSON
//! with [`encode`].
//!
//! ```
//! use fleetstream_schemas::{decode, GpsPing};
//!
//! let ping: GpsPing = decode(br#"{"event_id":"p1","driver_id":"d1","lat":52.5,"lng":13.4,
//!     "ts":"2026-11-02T07:00:00Z"}"#).unwrap();
//! assert_eq!(ping.driver_id, "d1");
//!
//! let err = decode::<GpsPing>(br#"{"event_id":"p1","driver_id":"d1","lat":95.0,"lng":13.4,
//!     "ts":"2026-11-02T07:00:00Z"}"#).unwrap_err();
//! assert_eq!(err.field(), "lat");
//! ```

mod arrow;
mod codec;
mod error;
mod geo;
mod ledger;
pub mod money;
mod overtime;
mod ride;
pub mod time;
mod timesheet;
pub mod topics;
mod validate;

pub use arrow::{driver_position_schema, ledger_entry_schema, overtime_record_schema, trip_event_schema};
pub use codec::{decode, decode_value, encode};
pub use error::SchemaError;
pub use geo::GeoPoint;
pub use ledger::{LedgerEntry, PostingKind, WalletCommand, wallet_account};
pub use overtime::{OvertimeFlag, OvertimeRecord, Period};
pub use ride::{
    CancelledBy, DriverPosition, DriverStatus, DriverStatusKind, GpsPing, TripCommand, TripEvent,
    TripEventKind, VehicleClass,
};
pub use timesheet::{Punch, PunchKind};
pub use validate::Validate;
