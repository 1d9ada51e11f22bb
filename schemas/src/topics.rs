//! Default topic names (DESIGN.md §3). Keys in comments.

/// GPS pings, keyed by driver_id.
pub const GPS_PINGS: &str = "gps.pings";
/// Driver online/offline and vehicle class, keyed by driver_id.
pub const DRIVER_STATUS: &str = "driver.status";
/// Trip commands, keyed by trip_id.
pub const TRIP_COMMANDS: &str = "trip.commands";
/// Trip events, keyed by trip_id.
pub const TRIP_EVENTS: &str = "trip.events";
/// Wallet commands (top-ups), keyed by account_id.
pub const WALLET_COMMANDS: &str = "wallet.commands";
/// Ledger postings, keyed by account_id.
pub const LEDGER_ENTRIES: &str = "ledger.entries";
/// Timesheet punches, keyed by employee_id.
pub const TIMESHEET_PUNCHES: &str = "timesheet.punches";
/// Overtime results per day and week, keyed by employee_id.
pub const OVERTIME_RECORDS: &str = "overtime.records";
/// Accepted driver positions with their H3 cell, keyed by driver_id.
pub const DRIVER_POSITIONS: &str = "driver.positions";

/// Topics that apps write to.
pub const INPUTS: [&str; 5] = [
    GPS_PINGS,
    DRIVER_STATUS,
    TRIP_COMMANDS,
    WALLET_COMMANDS,
    TIMESHEET_PUNCHES,
];
/// Topics that fleetstream writes results to.
pub const OUTPUTS: [&str; 4] = [TRIP_EVENTS, LEDGER_ENTRIES, OVERTIME_RECORDS, DRIVER_POSITIONS];

/// The dead-letter topic of `topic`: `<topic>.dlq`.
pub fn dlq(topic: &str) -> String {
    format!("{topic}.dlq")
}
