//! The trip step, keyed by trip: sends each command to the market of its trip (known from the
//! request's pickup), refuses commands for trips it never saw requested, and keeps a view of
//! every trip from `trip.events` for queries.

use std::sync::Arc;

use bytes::Bytes;
use fleetstream_schemas::{TripCommand, TripEvent, TripEventKind, encode, time, topics};
use fleetstream_topology::store::KvStore;
use fleetstream_topology::{Context, DeadLetter, ProcessError, Processor, Record};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::JobConfig;
use crate::geo;
use crate::location::market_key;
use crate::messages::MarketMsg;

#[derive(Debug, Clone)]
pub enum TripInput {
    Command(TripCommand),
    Event(TripEvent),
}

impl TripInput {
    pub fn ts(&self) -> i64 {
        match self {
            TripInput::Command(c) => time::to_millis(&c.ts()),
            TripInput::Event(e) => time::to_millis(&e.ts),
        }
    }
}

/// A trip as queries see it, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TripView {
    pub trip_id: String,
    pub status: String,
    pub rider_id: Option<String>,
    pub driver_id: Option<String>,
    pub vehicle_class: Option<String>,
    pub pickup: Option<(f64, f64)>,
    pub dropoff: Option<(f64, f64)>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub surge: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub fare: Option<Decimal>,
    pub distance_km: Option<f64>,
    pub duration_s: Option<f64>,
    pub offers: u32,
    pub requested_at: Option<i64>,
    pub matched_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub cancelled_by: Option<String>,
    pub updated_at: i64,
    /// The last event folded in (`event_id`): a live feed resumes after it.
    #[serde(default)]
    pub last_event_id: Option<String>,
}

impl TripView {
    pub fn apply(&mut self, event: &TripEvent) {
        let ts = time::to_millis(&event.ts);
        self.trip_id = event.trip_id.clone();
        self.status = event.kind.name().to_string();
        self.updated_at = ts;
        self.last_event_id = Some(event.event_id.clone());
        match &event.kind {
            TripEventKind::Requested {
                rider_id,
                vehicle_class,
                pickup,
                dropoff,
                surge,
            } => {
                self.rider_id = Some(rider_id.clone());
                self.vehicle_class = Some(vehicle_class.0.clone());
                self.pickup = Some((pickup.lat, pickup.lng));
                self.dropoff = Some((dropoff.lat, dropoff.lng));
                self.surge = Some(*surge);
                self.requested_at = Some(ts);
            }
            TripEventKind::Offered {
                driver_id, attempt, ..
            } => {
                self.driver_id = Some(driver_id.clone());
                self.offers = *attempt;
            }
            TripEventKind::Matched { driver_id } => {
                self.driver_id = Some(driver_id.clone());
                self.matched_at = Some(ts);
            }
            TripEventKind::Started { .. } => self.started_at = Some(ts),
            TripEventKind::Completed {
                fare,
                distance_km,
                duration_s,
                ..
            } => {
                self.fare = Some(*fare);
                self.distance_km = Some(*distance_km);
                self.duration_s = Some(*duration_s);
                self.completed_at = Some(ts);
            }
            TripEventKind::Cancelled { by, .. } => {
                self.cancelled_at = Some(ts);
                self.cancelled_by = Some(format!("{by:?}").to_lowercase());
            }
            TripEventKind::NoDriver { .. } => {
                if self.matched_at.is_none() {
                    self.driver_id = None;
                }
            }
        }
    }
}

#[derive(Clone)]
pub struct TripRouter {
    config: Arc<JobConfig>,
    routes: KvStore<String, String>,
    trips: KvStore<String, TripView>,
}

impl TripRouter {
    pub fn new(
        config: Arc<JobConfig>,
        routes: KvStore<String, String>,
        trips: KvStore<String, TripView>,
    ) -> Self {
        TripRouter {
            config,
            routes,
            trips,
        }
    }
}

impl Processor for TripRouter {
    type InKey = String;
    type InValue = TripInput;
    type OutKey = String;
    type OutValue = MarketMsg;

    fn process(
        &mut self,
        ctx: &mut Context<'_, String, MarketMsg>,
        record: Record<String, TripInput>,
    ) -> Result<(), ProcessError> {
        match record.value {
            TripInput::Event(event) => {
                let mut view = ctx.kv(&self.trips).get(&event.trip_id)?.unwrap_or_default();
                view.apply(&event);
                ctx.kv(&self.trips).put(&event.trip_id, &view);
                Ok(())
            }
            TripInput::Command(command) => {
                let trip_id = command.trip_id().to_string();
                let market = match &command {
                    TripCommand::Request { pickup, .. } => {
                        let market = market_key(
                            geo::market_of(pickup.lat, pickup.lng, self.config.matching.market_resolution)
                                .into(),
                        );
                        if ctx.kv(&self.routes).get(&trip_id)?.is_none() {
                            ctx.kv(&self.routes).put(&trip_id, &market);
                        }
                        ctx.kv(&self.routes).get(&trip_id)?.unwrap_or(market)
                    }
                    _ => match ctx.kv(&self.routes).get(&trip_id)? {
                        Some(market) => market,
                        None => {
                            ctx.dead_letter(DeadLetter {
                                topic: self.config.topic(topics::TRIP_COMMANDS),
                                key: Bytes::from(trip_id.clone()),
                                value: Some(Bytes::from(encode(&command))),
                                ts: record.ts,
                                field: Some("trip_id".into()),
                                reason: format!(
                                    "trip {trip_id}: {} for a trip that was never requested",
                                    command.name()
                                ),
                                stage: "trips".into(),
                            });
                            return Ok(());
                        }
                    },
                };
                ctx.forward(Record::new(
                    market,
                    MarketMsg::Command(encode(&command)),
                    record.ts,
                ))
            }
        }
    }
}
