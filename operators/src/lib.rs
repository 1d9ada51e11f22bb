//! The domain processors of fleetstream, on the runtime of `fleetstream-topology`:
//!
//! - [`location`]: the driver step — location index, replication to markets, arbitration of
//!   driver claims, routes;
//! - [`matching`]: markets — candidates by H3 rings, offers, surge;
//! - [`trips`]: the trip state machine and the trip step;
//! - [`settlement`]: fares, ledger postings, wallets;
//! - [`overtime`]: shifts, day and week windows, overtime figures;
//! - [`topology`]: all of it wired into one topology.
//!
//! The rules come from [`config::JobConfig`] (DESIGN.md's defaults). Nothing here knows about
//! Kafka, HTTP or SQL.
//!
//! ```
//! use fleetstream_operators::{config::JobConfig, topology};
//!
//! let jobs = topology::build("fleetstream", &JobConfig::default()).unwrap();
//! assert!(jobs.topology.source_topics().contains(&"gps.pings".to_string()));
//! ```

pub mod config;
pub mod generate;
pub mod geo;
pub mod input;
pub mod location;
pub mod matching;
pub mod messages;
pub mod overtime;
pub mod reference;
pub mod settlement;
pub mod topology;
pub mod trips;
