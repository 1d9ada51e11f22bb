use serde::{Deserialize, Serialize};

/// Where a driver was last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub lat: f64,
    pub lng: f64,
    /// Event time of the ping.
    pub ts: i64,
    pub cell9: u64,
    pub cell7: u64,
}

/// The trip holding a driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub trip_id: String,
    /// The market that claimed the driver.
    pub market: String,
    /// Accepted (an active trip) rather than an open offer.
    pub active: bool,
}

/// A trip under way: pings from `started_at` count towards its route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteState {
    pub trip_id: String,
    pub started_at: i64,
}

/// Everything the driver step keeps per driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriverState {
    pub online: bool,
    pub vehicle_class: Option<String>,
    pub status_ts: Option<i64>,
    pub position: Option<Position>,
    /// Recent pings (time, lat, lng), newest last.
    pub recent: Vec<(i64, f64, f64)>,
    /// Recent ping ids, to drop duplicates.
    pub recent_ids: Vec<String>,
    /// Markets the driver's view is replicated to (H3 cells).
    pub markets: Vec<u64>,
    /// The resolution-7 cell `markets` was computed for.
    pub replica_cell: Option<u64>,
    pub hold: Option<Hold>,
    pub route: Option<RouteState>,
}

impl DriverState {
    pub(crate) fn remember_id(&mut self, id: String, keep: usize) {
        if self.recent_ids.len() >= keep {
            self.recent_ids.remove(0);
        }
        self.recent_ids.push(id);
    }

    pub(crate) fn remember_ping(&mut self, ts: i64, lat: f64, lng: f64, keep: usize) {
        if self.recent.len() >= keep {
            self.recent.remove(0);
        }
        self.recent.push((ts, lat, lng));
    }
}
