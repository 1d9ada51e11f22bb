//! The driver step, keyed by driver: the location index and the arbiter of driver claims.
//!
//! - **Location index**: the latest position of every driver (with its H3 cells) and its
//!   status. A ping whose `event_id` was seen is ignored; a ping older than the newest one never
//!   moves the driver back. Each accepted ping goes to `driver.positions`.
//! - **Replication**: the driver's view goes to every market with a point within reach of it
//!   (the matching radius plus the size of a resolution-7 cell), so a market sees every driver
//!   a pickup inside it could be matched with, whatever partition either is on.
//! - **Arbitration**: markets claim a driver before offering it a trip. A driver is held by at
//!   most one trip (an open offer or an active trip): a claim for a held driver is refused,
//!   so no driver ever holds two active trips, even when two markets reach for it at once.
//! - **Route**: between a trip's start and completion the driver's pings are kept, and the
//!   route length is the sum of great-circle distances between consecutive pings by time.

mod state;

use std::sync::Arc;

use fleetstream_schemas::{DriverPosition, DriverStatus, DriverStatusKind, GpsPing, VehicleClass, time};
use fleetstream_topology::store::KvStore;
use fleetstream_topology::{Context, ProcessError, Processor, Record};

pub use self::state::{DriverState, Hold, Position, RouteState};
use crate::config::JobConfig;
use crate::geo;
use crate::messages::{DriverMsg, DriverView, MarketMsg};

/// Input of the driver step.
#[derive(Debug, Clone)]
pub enum DriverInput {
    Ping(GpsPing),
    Status(DriverStatus),
    Msg(DriverMsg),
}

/// Output of the driver step.
#[derive(Debug, Clone)]
pub enum DriverOutput {
    /// A message for a market (the key).
    Market(String, MarketMsg),
    /// An accepted ping.
    Position(DriverPosition),
}

/// How many recent pings a driver keeps for routes that start after their pings arrived.
const RECENT_PINGS: usize = 4;
/// How many recent ping ids a driver keeps to recognise duplicates.
const RECENT_IDS: usize = 8;

#[derive(Clone)]
pub struct DriverStep {
    drivers: KvStore<String, DriverState>,
    routes: KvStore<Vec<u8>, (f64, f64)>,
    replicas: geo::ReplicaMarkets,
}

impl DriverStep {
    pub fn new(
        config: Arc<JobConfig>,
        drivers: KvStore<String, DriverState>,
        routes: KvStore<Vec<u8>, (f64, f64)>,
    ) -> Self {
        let m = &config.matching;
        DriverStep {
            replicas: geo::ReplicaMarkets::new(m.radius_km, m.market_resolution),
            drivers,
            routes,
        }
    }

    fn view(driver_id: &str, state: &DriverState) -> Option<DriverView> {
        let p = state.position.as_ref()?;
        Some(DriverView {
            driver_id: driver_id.to_string(),
            lat: p.lat,
            lng: p.lng,
            cell9: p.cell9,
            cell7: p.cell7,
            ping_ts: p.ts,
            online: state.online,
            vehicle_class: state.vehicle_class.clone(),
            busy: state.hold.as_ref().map(|h| h.trip_id.clone()),
        })
    }

    /// Sends the driver's view to every market in reach, and says goodbye to markets left.
    fn publish(
        &mut self,
        ctx: &mut Context<'_, String, DriverOutput>,
        driver_id: &str,
        state: &mut DriverState,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let Some(view) = Self::view(driver_id, state) else {
            return Ok(());
        };
        let position = state.position.as_ref().expect("a view needs a position");
        if state.replica_cell != Some(position.cell7) {
            let markets = self.replicas.of(position.cell7).to_vec();
            for old in state.markets.iter().filter(|old| !markets.contains(old)) {
                let msg = MarketMsg::DriverLeft {
                    driver_id: driver_id.to_string(),
                };
                ctx.forward(Record::new(
                    driver_id.to_string(),
                    DriverOutput::Market(market_key(*old), msg),
                    ts,
                ))?;
            }
            state.markets = markets;
            state.replica_cell = Some(position.cell7);
        }
        for market in &state.markets {
            let msg = MarketMsg::Driver(view.clone());
            ctx.forward(Record::new(
                driver_id.to_string(),
                DriverOutput::Market(market_key(*market), msg),
                ts,
            ))?;
        }
        Ok(())
    }

    fn on_ping(
        &mut self,
        ctx: &mut Context<'_, String, DriverOutput>,
        ping: GpsPing,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let id = ping.driver_id.clone();
        let mut state = ctx.kv(&self.drivers).get(&id)?.unwrap_or_default();
        if state.recent_ids.contains(&ping.event_id) {
            return Ok(());
        }
        state.remember_id(ping.event_id.clone(), RECENT_IDS);
        if let Some(route) = &state.route
            && ts >= route.started_at
        {
            let key = route_key(&id, &route.trip_id, ts);
            ctx.kv(&self.routes).put(&key, &(ping.lat, ping.lng));
        }
        state.remember_ping(ts, ping.lat, ping.lng, RECENT_PINGS);
        let newer = state.position.as_ref().is_none_or(|p| ts > p.ts);
        if newer {
            let cell9 = geo::cell9(ping.lat, ping.lng);
            let cell7 = geo::cell(ping.lat, ping.lng, h3o::Resolution::Seven);
            state.position = Some(Position {
                lat: ping.lat,
                lng: ping.lng,
                ts,
                cell9: cell9.into(),
                cell7: cell7.into(),
            });
            self.publish(ctx, &id, &mut state, ts)?;
            let position = DriverPosition {
                event_id: ping.event_id,
                driver_id: id.clone(),
                lat: ping.lat,
                lng: ping.lng,
                cell: cell9.to_string(),
                status: Some(if state.online {
                    DriverStatusKind::Online
                } else {
                    DriverStatusKind::Offline
                }),
                vehicle_class: state.vehicle_class.clone().map(VehicleClass),
                ts: ping.ts,
            };
            ctx.forward(Record::new(id.clone(), DriverOutput::Position(position), ts))?;
        }
        ctx.kv(&self.drivers).put(&id, &state);
        Ok(())
    }

    fn on_status(
        &mut self,
        ctx: &mut Context<'_, String, DriverOutput>,
        status: DriverStatus,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let id = status.driver_id.clone();
        let mut state = ctx.kv(&self.drivers).get(&id)?.unwrap_or_default();
        // The latest status by event time wins; an older one arriving late changes nothing.
        if state.status_ts.is_some_and(|t| ts < t) {
            return Ok(());
        }
        state.status_ts = Some(ts);
        state.online = status.status == DriverStatusKind::Online;
        state.vehicle_class = Some(status.vehicle_class.0);
        self.publish(ctx, &id, &mut state, ts)?;
        ctx.kv(&self.drivers).put(&id, &state);
        Ok(())
    }

    fn on_msg(
        &mut self,
        ctx: &mut Context<'_, String, DriverOutput>,
        driver_id: String,
        msg: DriverMsg,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let mut state = ctx.kv(&self.drivers).get(&driver_id)?.unwrap_or_default();
        let before = state.hold.clone();
        match msg {
            DriverMsg::Claim { trip_id, market } => {
                let granted = match &state.hold {
                    None => {
                        state.hold = Some(Hold {
                            trip_id: trip_id.clone(),
                            market: market.clone(),
                            active: false,
                        });
                        true
                    }
                    // A repeated claim of the trip that already holds the driver.
                    Some(hold) => hold.trip_id == trip_id,
                };
                let reply = MarketMsg::ClaimResult {
                    trip_id,
                    driver_id: driver_id.clone(),
                    granted,
                };
                ctx.forward(Record::new(
                    driver_id.clone(),
                    DriverOutput::Market(market, reply),
                    ts,
                ))?;
            }
            DriverMsg::Release { trip_id } => {
                if state.hold.as_ref().is_some_and(|h| h.trip_id == trip_id) {
                    state.hold = None;
                }
            }
            DriverMsg::Matched { trip_id } => {
                if let Some(hold) = state.hold.as_mut().filter(|h| h.trip_id == trip_id) {
                    hold.active = true;
                }
            }
            DriverMsg::Started { trip_id, started_at } => {
                for (ping_ts, lat, lng) in state.recent.iter().copied().filter(|(t, _, _)| *t >= started_at) {
                    ctx.kv(&self.routes)
                        .put(&route_key(&driver_id, &trip_id, ping_ts), &(lat, lng));
                }
                state.route = Some(RouteState { trip_id, started_at });
            }
            DriverMsg::Completed {
                trip_id,
                completed_at,
                market,
            } => {
                let prefix = route_prefix(&driver_id, &trip_id);
                let pings = ctx.kv(&self.routes).scan_prefix(&prefix)?;
                let mut points: Vec<(i64, f64, f64)> = Vec::with_capacity(pings.len());
                for (key, (lat, lng)) in pings {
                    ctx.kv(&self.routes).delete(&key);
                    let ping_ts = route_ts(&key);
                    if ping_ts <= completed_at {
                        points.push((ping_ts, lat, lng));
                    }
                }
                points.sort_by_key(|(t, _, _)| *t);
                let distance_km = (points.len() >= 2).then(|| {
                    points
                        .windows(2)
                        .map(|w| geo::haversine_km(w[0].1, w[0].2, w[1].1, w[1].2))
                        .sum::<f64>()
                });
                if state.route.as_ref().is_some_and(|r| r.trip_id == trip_id) {
                    state.route = None;
                }
                if state.hold.as_ref().is_some_and(|h| h.trip_id == trip_id) {
                    state.hold = None;
                }
                let reply = MarketMsg::Route {
                    trip_id,
                    driver_id: driver_id.clone(),
                    distance_km,
                };
                ctx.forward(Record::new(
                    driver_id.clone(),
                    DriverOutput::Market(market, reply),
                    ts,
                ))?;
            }
        }
        if state.hold != before {
            self.publish(ctx, &driver_id, &mut state, ts)?;
        }
        ctx.kv(&self.drivers).put(&driver_id, &state);
        Ok(())
    }
}

impl Processor for DriverStep {
    type InKey = String;
    type InValue = DriverInput;
    type OutKey = String;
    type OutValue = DriverOutput;

    fn process(
        &mut self,
        ctx: &mut Context<'_, String, DriverOutput>,
        record: Record<String, DriverInput>,
    ) -> Result<(), ProcessError> {
        match record.value {
            DriverInput::Ping(ping) => self.on_ping(ctx, ping, record.ts),
            DriverInput::Status(status) => self.on_status(ctx, status, record.ts),
            DriverInput::Msg(msg) => self.on_msg(ctx, record.key, msg, record.ts),
        }
    }
}

impl DriverInput {
    pub fn ts(&self) -> Option<i64> {
        match self {
            DriverInput::Ping(p) => Some(time::to_millis(&p.ts)),
            DriverInput::Status(s) => Some(time::to_millis(&s.ts)),
            DriverInput::Msg(_) => None,
        }
    }
}

/// A market's key on the market topic: its H3 cell in hex.
pub fn market_key(market: u64) -> String {
    h3o::CellIndex::try_from(market).map_or_else(|_| format!("{market:x}"), |c| c.to_string())
}

fn route_prefix(driver: &str, trip: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(driver.len() + trip.len() + 2);
    key.extend_from_slice(driver.as_bytes());
    key.push(0);
    key.extend_from_slice(trip.as_bytes());
    key.push(0);
    key
}

fn route_key(driver: &str, trip: &str, ts: i64) -> Vec<u8> {
    let mut key = route_prefix(driver, trip);
    key.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    key
}

fn route_ts(key: &[u8]) -> i64 {
    let tail: [u8; 8] = key[key.len().saturating_sub(8)..].try_into().unwrap_or([0; 8]);
    (u64::from_be_bytes(tail) ^ (1 << 63)) as i64
}
