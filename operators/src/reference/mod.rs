//! Naive, single-threaded references of the jobs, written from DESIGN.md without the runtime:
//! every record is applied in file order to plain in-memory state, searching all drivers by
//! brute force. Tests compare the topology with them; the generators drive them in the loop.

pub mod overtime;
pub mod ride;
