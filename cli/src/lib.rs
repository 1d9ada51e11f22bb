//! The fleetstream binary's commands, as a library so that tests can call them in process.
//!
//! - `run`: the topology live on the embedded log or Kafka;
//! - `replay`: the topology over a file of records, deterministically;
//! - `export`: HR and accounting exports.

pub mod backend;
pub mod commands;
pub mod config;
pub mod edge;
pub mod input;
pub mod sinks;
