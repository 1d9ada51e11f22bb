//! The market step: trips, surge and offers of the markets of one partition.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use bytes::Bytes;
use fleetstream_schemas::{
    CancelledBy, GeoPoint, LedgerEntry, TripCommand, TripEvent, TripEventKind, VehicleClass, time, topics,
};
use fleetstream_topology::store::KvStore;
use fleetstream_topology::{Context, DeadLetter, ProcessError, Processor, Record, Timer};

use super::candidates::{Availability, IndexBuilder, MarketIndex};
use super::surge;
use crate::config::JobConfig;
use crate::geo;
use crate::input;
use crate::messages::{DriverMsg, DriverView, MarketMsg};
use crate::settlement::{cancellation_postings, fare, trip_postings};
use crate::trips::state::{PendingClaim, TripState, TripStatus, refusal};

/// Output of the market step.
#[derive(Debug, Clone)]
pub enum MarketOutput {
    Event(TripEvent),
    Posting(LedgerEntry),
    /// A message for a driver (the key).
    Driver(String, DriverMsg),
}

#[derive(Clone)]
pub struct MarketStep {
    config: Arc<JobConfig>,
    drivers: KvStore<String, DriverView>,
    trips: KvStore<String, TripState>,
    /// The request times of the pickup cells, one entry per cell and second (`surge::demand_key`).
    demand: KvStore<String, Vec<u16>>,
    /// Those request times in memory, loaded from `demand` when the task opens.
    demand_window: surge::DemandWindow,
    /// The in-memory index of each market's drivers, rebuilt from `drivers` when the task opens.
    index: HashMap<String, MarketIndex>,
}

type Ctx<'a> = Context<'a, String, MarketOutput>;

fn replica_key(market: &str, driver: &str) -> String {
    format!("{market}/{driver}")
}

impl MarketStep {
    pub fn new(
        config: Arc<JobConfig>,
        drivers: KvStore<String, DriverView>,
        trips: KvStore<String, TripState>,
        demand: KvStore<String, Vec<u16>>,
    ) -> Self {
        MarketStep {
            demand_window: surge::DemandWindow::new(config.matching.surge_window),
            config,
            drivers,
            trips,
            demand,
            index: HashMap::new(),
        }
    }

    fn availability(&self, at: i64) -> Availability {
        Availability {
            at,
            freshness_ms: self.config.matching.ping_freshness.as_millis() as i64,
        }
    }

    fn event(
        &self,
        ctx: &mut Ctx<'_>,
        trip: &TripState,
        ts: i64,
        kind: TripEventKind,
    ) -> Result<(), ProcessError> {
        let event_id = match &kind {
            TripEventKind::Offered { attempt, .. } => format!("{}:offered:{attempt}", trip.trip_id),
            other => format!("{}:{}", trip.trip_id, other.name()),
        };
        let event = TripEvent {
            event_id,
            trip_id: trip.trip_id.clone(),
            ts: time::from_millis(ts),
            kind,
        };
        ctx.forward(Record::new(trip.trip_id.clone(), MarketOutput::Event(event), ts))
    }

    fn to_driver(
        &self,
        ctx: &mut Ctx<'_>,
        driver: &str,
        msg: DriverMsg,
        ts: i64,
    ) -> Result<(), ProcessError> {
        ctx.forward(Record::new(
            driver.to_string(),
            MarketOutput::Driver(driver.to_string(), msg),
            ts,
        ))
    }

    fn reject(&self, ctx: &mut Ctx<'_>, command: &TripCommand, ts: i64, field: Option<&str>, reason: String) {
        ctx.dead_letter(DeadLetter {
            topic: self.config.topic(topics::TRIP_COMMANDS),
            key: Bytes::from(command.trip_id().to_string()),
            value: Some(Bytes::from(fleetstream_schemas::encode(command))),
            ts,
            field: field.map(str::to_string),
            reason,
            stage: "markets".into(),
        });
    }

    /// Offers the trip to the best candidate (through a claim), or ends it as `no_driver`.
    fn offer_next(&mut self, ctx: &mut Ctx<'_>, trip: &mut TripState, at: i64) -> Result<(), ProcessError> {
        let m = &self.config.matching;
        if trip.attempts() >= m.max_offers {
            return self.no_driver(ctx, trip, at);
        }
        let availability = self.availability(at);
        let candidate = self.index.get(&trip.market).and_then(|index| {
            index.best(
                trip.pickup,
                &trip.vehicle_class,
                m.radius_km,
                &availability,
                &|d| trip.excludes(d),
            )
        });
        match candidate {
            None => self.no_driver(ctx, trip, at),
            Some(c) => {
                trip.status = TripStatus::Searching;
                trip.pending = Some(PendingClaim {
                    driver_id: c.driver_id.clone(),
                    at,
                    distance_km: c.distance_km,
                });
                let claim = DriverMsg::Claim {
                    trip_id: trip.trip_id.clone(),
                    market: trip.market.clone(),
                };
                self.to_driver(ctx, &c.driver_id, claim, at)
            }
        }
    }

    fn no_driver(&self, ctx: &mut Ctx<'_>, trip: &mut TripState, at: i64) -> Result<(), ProcessError> {
        trip.status = TripStatus::NoDriver;
        trip.pending = None;
        self.event(
            ctx,
            trip,
            at,
            TripEventKind::NoDriver {
                offers: trip.attempts(),
            },
        )
    }

    fn timer_key(trip_id: &str, attempt: u32) -> Vec<u8> {
        let mut key = trip_id.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&attempt.to_be_bytes());
        key
    }

    fn on_claim_result(
        &mut self,
        ctx: &mut Ctx<'_>,
        trip_id: String,
        driver_id: String,
        granted: bool,
    ) -> Result<(), ProcessError> {
        let Some(mut trip) = ctx.kv(&self.trips).get(&trip_id)? else {
            return Ok(());
        };
        let pending = trip.pending.clone().filter(|p| p.driver_id == driver_id);
        let Some(pending) = pending else {
            // An answer nobody waits for: give a granted driver back.
            if granted && trip.status.assigned_driver() != Some(&driver_id) {
                self.to_driver(ctx, &driver_id, DriverMsg::Release { trip_id }, ctx.stream_time())?;
            }
            return Ok(());
        };
        trip.pending = None;
        if trip.cancelled_during_claim || trip.status.is_final() {
            if granted {
                self.to_driver(
                    ctx,
                    &driver_id,
                    DriverMsg::Release {
                        trip_id: trip_id.clone(),
                    },
                    pending.at,
                )?;
            }
        } else if granted {
            trip.offered.push(driver_id.clone());
            trip.skipped.clear();
            let attempt = trip.attempts();
            let expires_at = pending.at + self.config.matching.offer_timeout.as_millis() as i64;
            trip.status = TripStatus::Offered {
                driver_id: driver_id.clone(),
                attempt,
                expires_at,
            };
            ctx.schedule(expires_at, &Self::timer_key(&trip_id, attempt));
            let kind = TripEventKind::Offered {
                driver_id,
                attempt,
                pickup_distance_km: round4(pending.distance_km),
            };
            self.event(ctx, &trip, pending.at, kind)?;
        } else {
            trip.skipped.push(driver_id);
            self.offer_next(ctx, &mut trip, pending.at)?;
        }
        ctx.kv(&self.trips).put(&trip_id, &trip);
        Ok(())
    }

    fn on_route(
        &mut self,
        ctx: &mut Ctx<'_>,
        trip_id: String,
        driver_id: String,
        distance: Option<f64>,
    ) -> Result<(), ProcessError> {
        let Some(mut trip) = ctx.kv(&self.trips).get(&trip_id)? else {
            return Ok(());
        };
        if trip.status
            != (TripStatus::Completing {
                driver_id: driver_id.clone(),
            })
        {
            return Ok(());
        }
        let Some(tariff) = self.config.tariff.get(&trip.vehicle_class) else {
            return Ok(());
        };
        let (started, completed) = (
            trip.started_at.unwrap_or_default(),
            trip.completed_at.unwrap_or_default(),
        );
        let distance_km = distance.unwrap_or_else(|| {
            geo::haversine_km(trip.pickup.0, trip.pickup.1, trip.dropoff.0, trip.dropoff.1)
        });
        let duration_ms = completed - started;
        let priced = fare(tariff, distance_km, duration_ms, trip.surge);
        trip.status = TripStatus::Completed {
            driver_id: driver_id.clone(),
        };
        let kind = TripEventKind::Completed {
            driver_id: driver_id.clone(),
            rider_id: trip.rider_id.clone(),
            vehicle_class: VehicleClass(trip.vehicle_class.clone()),
            fare: priced.fare,
            surge: trip.surge,
            distance_km: round4(distance_km),
            duration_s: duration_ms as f64 / 1000.0,
        };
        self.event(ctx, &trip, completed, kind)?;
        for posting in trip_postings(
            &trip.trip_id,
            &trip.rider_id,
            &driver_id,
            &priced,
            tariff,
            completed,
        ) {
            ctx.forward(Record::new(
                posting.account_id.clone(),
                MarketOutput::Posting(posting),
                completed,
            ))?;
        }
        ctx.kv(&self.trips).put(&trip_id, &trip);
        Ok(())
    }

    fn on_command(
        &mut self,
        ctx: &mut Ctx<'_>,
        market: String,
        command: TripCommand,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let trip_id = command.trip_id().to_string();
        let existing = ctx.kv(&self.trips).get(&trip_id)?;
        if let TripCommand::Request {
            rider_id,
            pickup,
            dropoff,
            vehicle_class,
            ..
        } = &command
        {
            if let Some(trip) = existing {
                let same = trip.rider_id == *rider_id
                    && trip.pickup == (pickup.lat, pickup.lng)
                    && trip.dropoff == (dropoff.lat, dropoff.lng)
                    && trip.vehicle_class == vehicle_class.0
                    && trip.requested_at == ts;
                if !same {
                    self.reject(
                        ctx,
                        &command,
                        ts,
                        Some("trip_id"),
                        format!("trip {trip_id}: already requested with other details"),
                    );
                }
                return Ok(());
            }
            if !self.config.tariff.contains_key(vehicle_class.as_str()) {
                let reason = format!("trip {trip_id}: no tariff for vehicle class {vehicle_class:?}");
                self.reject(ctx, &command, ts, Some("vehicle_class"), reason);
                return Ok(());
            }
            return self.request(ctx, market, &command, ts);
        }
        let Some(mut trip) = existing else {
            let reason = format!(
                "trip {trip_id}: {} for a trip that was never requested",
                command.name()
            );
            self.reject(ctx, &command, ts, Some("trip_id"), reason);
            return Ok(());
        };
        let outcome = self.transition(ctx, &mut trip, &command, ts)?;
        match outcome {
            Outcome::Applied => ctx.kv(&self.trips).put(&trip_id, &trip),
            Outcome::Retry => {}
            Outcome::Refused { field, reason } => self.reject(ctx, &command, ts, field, reason),
        }
        Ok(())
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        market: String,
        command: &TripCommand,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let TripCommand::Request {
            trip_id,
            rider_id,
            pickup,
            dropoff,
            vehicle_class,
            ..
        } = command
        else {
            unreachable!("called for requests")
        };
        let m = &self.config.matching;
        let cell7 = geo::cell(pickup.lat, pickup.lng, h3o::Resolution::Seven);
        let mut store = ctx.kv(&self.demand);
        let demand = self
            .demand_window
            .record(cell7.into(), ts, &mut |change| match change {
                surge::BucketChange::Put { cell, start, offsets } => {
                    store.put(&surge::demand_key(cell, start), offsets)
                }
                surge::BucketChange::Delete { cell, start } => store.delete(&surge::demand_key(cell, start)),
            });
        let supply = self
            .index
            .get(&market)
            .map_or(0, |i| i.supply(cell7.into(), &self.availability(ts)));
        let surge = surge::multiplier(demand, supply, m.surge_min, m.surge_max);
        let mut trip = TripState {
            trip_id: trip_id.clone(),
            rider_id: rider_id.clone(),
            vehicle_class: vehicle_class.0.clone(),
            pickup: (pickup.lat, pickup.lng),
            dropoff: (dropoff.lat, dropoff.lng),
            market,
            requested_at: ts,
            surge,
            status: TripStatus::Searching,
            offered: Vec::new(),
            skipped: Vec::new(),
            pending: None,
            matched_at: None,
            started_at: None,
            completed_at: None,
            cancelled_during_claim: false,
        };
        let kind = TripEventKind::Requested {
            rider_id: rider_id.clone(),
            vehicle_class: vehicle_class.clone(),
            pickup: GeoPoint {
                lat: pickup.lat,
                lng: pickup.lng,
            },
            dropoff: GeoPoint {
                lat: dropoff.lat,
                lng: dropoff.lng,
            },
            surge,
        };
        self.event(ctx, &trip, ts, kind)?;
        self.offer_next(ctx, &mut trip, ts)?;
        ctx.kv(&self.trips).put(trip_id, &trip);
        Ok(())
    }

    fn transition(
        &mut self,
        ctx: &mut Ctx<'_>,
        trip: &mut TripState,
        command: &TripCommand,
        ts: i64,
    ) -> Result<Outcome, ProcessError> {
        let trip_id = trip.trip_id.clone();
        match (command, trip.status.clone()) {
            (
                TripCommand::Accept { driver_id, .. },
                TripStatus::Offered {
                    driver_id: offered,
                    attempt,
                    expires_at,
                },
            ) if *driver_id == offered => {
                ctx.cancel(expires_at, &Self::timer_key(&trip_id, attempt));
                trip.status = TripStatus::Matched {
                    driver_id: offered.clone(),
                };
                trip.matched_at = Some(ts);
                self.to_driver(ctx, &offered, DriverMsg::Matched { trip_id }, ts)?;
                self.event(ctx, trip, ts, TripEventKind::Matched { driver_id: offered })?;
                Ok(Outcome::Applied)
            }
            (TripCommand::Accept { driver_id, .. }, status)
                if status.assigned_driver() == Some(driver_id) =>
            {
                Ok(Outcome::Retry)
            }
            (
                TripCommand::Decline { driver_id, .. },
                TripStatus::Offered {
                    driver_id: offered,
                    attempt,
                    expires_at,
                },
            ) if *driver_id == offered => {
                ctx.cancel(expires_at, &Self::timer_key(&trip_id, attempt));
                self.to_driver(ctx, &offered, DriverMsg::Release { trip_id }, ts)?;
                self.offer_next(ctx, trip, ts)?;
                Ok(Outcome::Applied)
            }
            (TripCommand::Decline { driver_id, .. }, status)
                if trip.offered.contains(driver_id) && status.assigned_driver() != Some(driver_id) =>
            {
                // Declined or timed out already.
                Ok(Outcome::Retry)
            }
            (TripCommand::Start { driver_id, .. }, TripStatus::Matched { driver_id: matched })
                if *driver_id == matched =>
            {
                trip.status = TripStatus::Started {
                    driver_id: matched.clone(),
                };
                trip.started_at = Some(ts);
                self.to_driver(
                    ctx,
                    &matched,
                    DriverMsg::Started {
                        trip_id,
                        started_at: ts,
                    },
                    ts,
                )?;
                self.event(ctx, trip, ts, TripEventKind::Started { driver_id: matched })?;
                Ok(Outcome::Applied)
            }
            (
                TripCommand::Start { driver_id, .. },
                TripStatus::Started { driver_id: d }
                | TripStatus::Completing { driver_id: d }
                | TripStatus::Completed { driver_id: d },
            ) if *driver_id == d => Ok(Outcome::Retry),
            (TripCommand::Complete { driver_id, .. }, TripStatus::Started { driver_id: started })
                if *driver_id == started =>
            {
                trip.status = TripStatus::Completing {
                    driver_id: started.clone(),
                };
                trip.completed_at = Some(ts);
                let market = trip.market.clone();
                self.to_driver(
                    ctx,
                    &started,
                    DriverMsg::Completed {
                        trip_id,
                        completed_at: ts,
                        market,
                    },
                    ts,
                )?;
                Ok(Outcome::Applied)
            }
            (
                TripCommand::Complete { driver_id, .. },
                TripStatus::Completing { driver_id: d } | TripStatus::Completed { driver_id: d },
            ) if *driver_id == d => Ok(Outcome::Retry),
            (TripCommand::Cancel { .. }, TripStatus::Cancelled) => Ok(Outcome::Retry),
            (
                TripCommand::Cancel { by, reason, .. },
                status @ (TripStatus::Searching | TripStatus::Offered { .. } | TripStatus::Matched { .. }),
            ) => {
                let mut fee = None;
                let mut driver = None;
                match &status {
                    TripStatus::Searching => trip.cancelled_during_claim = trip.pending.is_some(),
                    TripStatus::Offered {
                        driver_id,
                        attempt,
                        expires_at,
                    } => {
                        ctx.cancel(*expires_at, &Self::timer_key(&trip_id, *attempt));
                        self.to_driver(
                            ctx,
                            driver_id,
                            DriverMsg::Release {
                                trip_id: trip_id.clone(),
                            },
                            ts,
                        )?;
                    }
                    TripStatus::Matched { driver_id } => {
                        driver = Some(driver_id.clone());
                        self.to_driver(
                            ctx,
                            driver_id,
                            DriverMsg::Release {
                                trip_id: trip_id.clone(),
                            },
                            ts,
                        )?;
                        let free = self.config.matching.free_cancellation.as_millis() as i64;
                        if *by == CancelledBy::Rider && trip.matched_at.is_some_and(|m| ts - m > free) {
                            let tariff = self
                                .config
                                .tariff
                                .get(&trip.vehicle_class)
                                .cloned()
                                .unwrap_or_default();
                            fee = Some(tariff.cancellation_fee);
                            for posting in
                                cancellation_postings(&trip_id, &trip.rider_id, driver_id, &tariff, ts)
                            {
                                ctx.forward(Record::new(
                                    posting.account_id.clone(),
                                    MarketOutput::Posting(posting),
                                    ts,
                                ))?;
                            }
                        }
                    }
                    _ => {}
                }
                trip.status = TripStatus::Cancelled;
                let kind = TripEventKind::Cancelled {
                    by: *by,
                    reason: reason.clone(),
                    driver_id: driver,
                    fee,
                };
                self.event(ctx, trip, ts, kind)?;
                Ok(Outcome::Applied)
            }
            (command, status) => {
                let (field, detail) = match (command.driver_id(), status.assigned_driver()) {
                    (Some(given), Some(assigned)) if given != assigned => {
                        (Some("driver_id"), format!(" with driver {assigned}, not {given}"))
                    }
                    (Some(given), None) => match &status {
                        TripStatus::Offered { driver_id, .. } if driver_id != given => {
                            (Some("driver_id"), format!(" to driver {driver_id}, not {given}"))
                        }
                        _ => (None, String::new()),
                    },
                    _ => (None, String::new()),
                };
                Ok(Outcome::Refused {
                    field,
                    reason: refusal(trip, command.name(), &detail),
                })
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, at: i64, key: &[u8]) -> Result<(), ProcessError> {
        // `<trip id> 0x00 <attempt: u32 big-endian>`
        let Some(split) = key.len().checked_sub(5) else {
            return Ok(());
        };
        let trip_id = String::from_utf8_lossy(&key[..split]).into_owned();
        let attempt = u32::from_be_bytes(key[split + 1..].try_into().unwrap_or([0; 4]));
        let Some(mut trip) = ctx.kv(&self.trips).get(&trip_id)? else {
            return Ok(());
        };
        let TripStatus::Offered {
            driver_id,
            attempt: current,
            ..
        } = trip.status.clone()
        else {
            return Ok(());
        };
        if current != attempt {
            return Ok(());
        }
        // No answer in time: the driver is released and the next candidate asked.
        self.to_driver(
            ctx,
            &driver_id,
            DriverMsg::Release {
                trip_id: trip_id.clone(),
            },
            at,
        )?;
        self.offer_next(ctx, &mut trip, at)?;
        ctx.kv(&self.trips).put(&trip_id, &trip);
        Ok(())
    }
}

enum Outcome {
    Applied,
    /// A repeat of a command that already took effect: nothing changes.
    Retry,
    Refused {
        field: Option<&'static str>,
        reason: String,
    },
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

impl Processor for MarketStep {
    type InKey = String;
    type InValue = MarketMsg;
    type OutKey = String;
    type OutValue = MarketOutput;

    fn init(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ProcessError> {
        self.index.clear();
        // Replicas are keyed `market/driver`, so the scan meets a market's drivers one after
        // the other: each run of them goes into its market's index in one piece.
        let index = &mut self.index;
        let mut run: Option<(String, IndexBuilder)> = None;
        ctx.kv(&self.drivers).for_each_prefix(&[], |key, view| {
            let market = key.split_once('/').map_or(key.as_str(), |(m, _)| m);
            match &mut run {
                Some((current, builder)) if current == market => builder.push(view),
                _ => {
                    let mut builder = IndexBuilder::new(index.remove(market).unwrap_or_default());
                    builder.push(view);
                    if let Some((done, built)) = run.replace((market.to_string(), builder)) {
                        index.insert(done, built.build());
                    }
                }
            }
        })?;
        if let Some((done, built)) = run {
            index.insert(done, built.build());
        }
        let window = &mut self.demand_window;
        window.clear();
        ctx.kv(&self.demand).for_each_prefix(&[], |key, offsets| {
            if let Some((cell, start)) = surge::parse_demand_key(&key) {
                window.load(cell, start, offsets);
            }
        })?;
        Ok(())
    }

    fn process(&mut self, ctx: &mut Ctx<'_>, record: Record<String, MarketMsg>) -> Result<(), ProcessError> {
        let market = record.key;
        match record.value {
            MarketMsg::Driver(view) => {
                ctx.kv(&self.drivers)
                    .put(&replica_key(&market, &view.driver_id), &view);
                self.index.entry(market).or_default().upsert(view);
                Ok(())
            }
            MarketMsg::DriverLeft { driver_id } => {
                ctx.kv(&self.drivers).delete(&replica_key(&market, &driver_id));
                if let Some(index) = self.index.get_mut(&market) {
                    index.remove(&driver_id);
                }
                Ok(())
            }
            MarketMsg::Command(json) => match input::decode::<TripCommand>(&json) {
                Ok(command) => self.on_command(ctx, market, command, record.ts),
                Err(e) => Err(ProcessError::Bug {
                    processor: "markets".into(),
                    detail: format!("routed command: {e}"),
                }),
            },
            MarketMsg::ClaimResult {
                trip_id,
                driver_id,
                granted,
            } => self.on_claim_result(ctx, trip_id, driver_id, granted),
            MarketMsg::Route {
                trip_id,
                driver_id,
                distance_km,
            } => self.on_route(ctx, trip_id, driver_id, distance_km),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) -> Result<(), ProcessError> {
        match timer {
            Timer::EventTime { at, key } => MarketStep::on_timer(self, ctx, at, &key),
            Timer::WallClock { .. } => Ok(()),
        }
    }
}
