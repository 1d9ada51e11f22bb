//! The ride job as one loop over records in order (DESIGN.md §4, §5).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use fleetstream_schemas::{
    CancelledBy, DriverStatus, DriverStatusKind, GeoPoint, GpsPing, LedgerEntry, TripCommand, TripEvent,
    TripEventKind, VehicleClass, WalletCommand, time,
};
use rust_decimal::Decimal;

use crate::config::JobConfig;
use crate::geo;
use crate::matching::surge;
use crate::settlement::{cancellation_postings, fare, top_up_postings, trip_postings};

#[derive(Debug, Clone, Default)]
struct Driver {
    online: bool,
    class: Option<String>,
    status_ts: Option<i64>,
    position: Option<(f64, f64, i64)>,
    seen: HashSet<String>,
    pings: Vec<(i64, f64, f64)>,
    busy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Offered {
        driver: String,
        attempt: u32,
        expires: i64,
    },
    Matched(String),
    Started(String),
    Completed(String),
    Cancelled,
    NoDriver,
}

#[derive(Debug, Clone)]
struct Trip {
    rider: String,
    class: String,
    pickup: (f64, f64),
    dropoff: (f64, f64),
    requested_at: i64,
    surge: Decimal,
    state: State,
    offered: Vec<String>,
    matched_at: Option<i64>,
    started_at: Option<i64>,
}

/// A record for the reference: the decoded value of one input topic.
#[derive(Debug, Clone)]
pub enum RideInput {
    Ping(GpsPing),
    Status(DriverStatus),
    Command(TripCommand),
    Wallet(WalletCommand),
}

impl RideInput {
    pub fn ts(&self) -> i64 {
        match self {
            RideInput::Ping(p) => time::to_millis(&p.ts),
            RideInput::Status(s) => time::to_millis(&s.ts),
            RideInput::Command(c) => time::to_millis(&c.ts()),
            RideInput::Wallet(w) => time::to_millis(&w.ts()),
        }
    }
}

/// The naive ride job.
#[derive(Debug, Clone)]
pub struct RideReference {
    config: JobConfig,
    drivers: BTreeMap<String, Driver>,
    trips: HashMap<String, Trip>,
    demand: Vec<(u64, i64)>,
    /// (time, trip, attempt)
    timers: BTreeSet<(i64, String, u32)>,
    time: i64,
    pub events: Vec<TripEvent>,
    pub postings: Vec<LedgerEntry>,
    /// Commands refused (they would go to the DLQ), as (trip, command).
    pub refused: Vec<(String, String)>,
}

impl RideReference {
    pub fn new(config: JobConfig) -> Self {
        RideReference {
            config,
            drivers: BTreeMap::new(),
            trips: HashMap::new(),
            demand: Vec::new(),
            timers: BTreeSet::new(),
            time: i64::MIN,
            events: Vec::new(),
            postings: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Applies one record, after firing every timer due by its time.
    pub fn apply(&mut self, input: &RideInput) {
        let ts = input.ts();
        self.advance(ts);
        match input {
            RideInput::Ping(p) => self.ping(p, ts),
            RideInput::Status(s) => self.status(s, ts),
            RideInput::Command(c) => self.command(c, ts),
            RideInput::Wallet(WalletCommand::TopUp {
                command_id,
                account_id,
                amount,
                ..
            }) => {
                self.postings
                    .extend(top_up_postings(command_id, account_id, *amount, ts));
            }
        }
    }

    /// Fires every timer due by `ts`.
    pub fn advance(&mut self, ts: i64) {
        if ts <= self.time {
            return;
        }
        self.time = ts;
        while let Some((at, trip, attempt)) = self.timers.first().cloned() {
            if at > ts {
                break;
            }
            self.timers.pop_first();
            let expired = matches!(
                self.trips.get(&trip).map(|t| &t.state),
                Some(State::Offered { attempt: a, .. }) if *a == attempt
            );
            if expired {
                self.release(&trip);
                self.offer_next(&trip, at);
            }
        }
    }

    /// Trips offered since the last call: (trip, driver, attempt, time).
    pub fn events_since(&self, from: usize) -> &[TripEvent] {
        &self.events[from..]
    }

    fn ping(&mut self, p: &GpsPing, ts: i64) {
        let d = self.drivers.entry(p.driver_id.clone()).or_default();
        if !d.seen.insert(p.event_id.clone()) {
            return;
        }
        d.pings.push((ts, p.lat, p.lng));
        if d.position.is_none_or(|(_, _, t)| ts > t) {
            d.position = Some((p.lat, p.lng, ts));
        }
    }

    fn status(&mut self, s: &DriverStatus, ts: i64) {
        let d = self.drivers.entry(s.driver_id.clone()).or_default();
        if d.status_ts.is_some_and(|t| ts < t) {
            return;
        }
        d.status_ts = Some(ts);
        d.online = s.status == DriverStatusKind::Online;
        d.class = Some(s.vehicle_class.0.clone());
    }

    fn available(&self, d: &Driver, at: i64) -> bool {
        let fresh = self.config.matching.ping_freshness.as_millis() as i64;
        d.online && d.busy.is_none() && d.position.is_some_and(|(_, _, t)| at - t <= fresh)
    }

    fn event(&mut self, trip: &str, ts: i64, kind: TripEventKind) {
        let event_id = match &kind {
            TripEventKind::Offered { attempt, .. } => format!("{trip}:offered:{attempt}"),
            other => format!("{trip}:{}", other.name()),
        };
        self.events.push(TripEvent {
            event_id,
            trip_id: trip.to_string(),
            ts: time::from_millis(ts),
            kind,
        });
    }

    fn release(&mut self, trip: &str) {
        for d in self.drivers.values_mut() {
            if d.busy.as_deref() == Some(trip) {
                d.busy = None;
            }
        }
    }

    fn offer_next(&mut self, trip_id: &str, at: i64) {
        let m = self.config.matching.clone();
        let trip = self.trips[trip_id].clone();
        if trip.offered.len() as u32 >= m.max_offers {
            return self.no_driver(trip_id, at);
        }
        let mut best: Option<(f64, String)> = None;
        for (id, d) in &self.drivers {
            if d.class.as_deref() != Some(trip.class.as_str())
                || !self.available(d, at)
                || trip.offered.contains(id)
            {
                continue;
            }
            let (lat, lng, _) = d.position.expect("available drivers have a position");
            let dist = geo::haversine_km(trip.pickup.0, trip.pickup.1, lat, lng);
            if dist <= m.radius_km
                && best
                    .as_ref()
                    .is_none_or(|(b, bid)| dist < *b || (dist == *b && id < bid))
            {
                best = Some((dist, id.clone()));
            }
        }
        let Some((dist, driver)) = best else {
            return self.no_driver(trip_id, at);
        };
        self.drivers.get_mut(&driver).expect("a candidate").busy = Some(trip_id.to_string());
        let t = self.trips.get_mut(trip_id).expect("the trip");
        t.offered.push(driver.clone());
        let attempt = t.offered.len() as u32;
        let expires = at + m.offer_timeout.as_millis() as i64;
        t.state = State::Offered {
            driver: driver.clone(),
            attempt,
            expires,
        };
        self.timers.insert((expires, trip_id.to_string(), attempt));
        let pickup_distance_km = (dist * 10_000.0).round() / 10_000.0;
        self.event(
            trip_id,
            at,
            TripEventKind::Offered {
                driver_id: driver,
                attempt,
                pickup_distance_km,
            },
        );
    }

    fn no_driver(&mut self, trip_id: &str, at: i64) {
        let t = self.trips.get_mut(trip_id).expect("the trip");
        t.state = State::NoDriver;
        let offers = t.offered.len() as u32;
        self.event(trip_id, at, TripEventKind::NoDriver { offers });
    }

    fn refuse(&mut self, c: &TripCommand) {
        self.refused.push((c.trip_id().to_string(), c.name().to_string()));
    }

    fn command(&mut self, c: &TripCommand, ts: i64) {
        let id = c.trip_id().to_string();
        if let TripCommand::Request {
            rider_id,
            pickup,
            dropoff,
            vehicle_class,
            ..
        } = c
        {
            if let Some(t) = self.trips.get(&id) {
                let same = t.rider == *rider_id
                    && t.pickup == (pickup.lat, pickup.lng)
                    && t.dropoff == (dropoff.lat, dropoff.lng)
                    && t.class == vehicle_class.0
                    && t.requested_at == ts;
                if !same {
                    self.refuse(c);
                }
                return;
            }
            if !self.config.tariff.contains_key(vehicle_class.as_str()) {
                return self.refuse(c);
            }
            let m = self.config.matching.clone();
            let cell7 = u64::from(geo::cell(pickup.lat, pickup.lng, h3o::Resolution::Seven));
            let window = m.surge_window.as_millis() as i64;
            self.demand.push((cell7, ts));
            let demand = self
                .demand
                .iter()
                .filter(|(c, t)| *c == cell7 && *t > ts - window && *t <= ts)
                .count();
            let supply = self
                .drivers
                .values()
                .filter(|d| {
                    self.available(d, ts)
                        && d.position.is_some_and(|(lat, lng, _)| {
                            u64::from(geo::cell(lat, lng, h3o::Resolution::Seven)) == cell7
                        })
                })
                .count();
            let surge = surge::multiplier(demand, supply, m.surge_min, m.surge_max);
            self.trips.insert(
                id.clone(),
                Trip {
                    rider: rider_id.clone(),
                    class: vehicle_class.0.clone(),
                    pickup: (pickup.lat, pickup.lng),
                    dropoff: (dropoff.lat, dropoff.lng),
                    requested_at: ts,
                    surge,
                    state: State::NoDriver,
                    offered: Vec::new(),
                    matched_at: None,
                    started_at: None,
                },
            );
            let kind = TripEventKind::Requested {
                rider_id: rider_id.clone(),
                vehicle_class: VehicleClass(vehicle_class.0.clone()),
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
            self.event(&id, ts, kind);
            return self.offer_next(&id, ts);
        }
        let Some(trip) = self.trips.get(&id).cloned() else {
            return self.refuse(c);
        };
        match (c, &trip.state) {
            (
                TripCommand::Accept { driver_id, .. },
                State::Offered {
                    driver,
                    attempt,
                    expires,
                },
            ) if driver_id == driver => {
                self.timers.remove(&(*expires, id.clone(), *attempt));
                let t = self.trips.get_mut(&id).expect("the trip");
                t.state = State::Matched(driver.clone());
                t.matched_at = Some(ts);
                self.event(
                    &id,
                    ts,
                    TripEventKind::Matched {
                        driver_id: driver.clone(),
                    },
                );
            }
            (
                TripCommand::Decline { driver_id, .. },
                State::Offered {
                    driver,
                    attempt,
                    expires,
                },
            ) if driver_id == driver => {
                self.timers.remove(&(*expires, id.clone(), *attempt));
                self.release(&id);
                self.offer_next(&id, ts);
            }
            (TripCommand::Start { driver_id, .. }, State::Matched(driver)) if driver_id == driver => {
                let t = self.trips.get_mut(&id).expect("the trip");
                t.state = State::Started(driver.clone());
                t.started_at = Some(ts);
                self.event(
                    &id,
                    ts,
                    TripEventKind::Started {
                        driver_id: driver.clone(),
                    },
                );
            }
            (TripCommand::Complete { driver_id, .. }, State::Started(driver)) if driver_id == driver => {
                let started = trip.started_at.expect("started");
                let mut pings: Vec<(i64, f64, f64)> = self.drivers[driver]
                    .pings
                    .iter()
                    .copied()
                    .filter(|(t, _, _)| *t >= started && *t <= ts)
                    .collect();
                pings.sort_by_key(|p| p.0);
                pings.dedup_by_key(|p| p.0);
                let distance = if pings.len() >= 2 {
                    pings
                        .windows(2)
                        .map(|w| geo::haversine_km(w[0].1, w[0].2, w[1].1, w[1].2))
                        .sum()
                } else {
                    geo::haversine_km(trip.pickup.0, trip.pickup.1, trip.dropoff.0, trip.dropoff.1)
                };
                let tariff = self.config.tariff[&trip.class].clone();
                let priced = fare(&tariff, distance, ts - started, trip.surge);
                self.release(&id);
                self.trips.get_mut(&id).expect("the trip").state = State::Completed(driver.clone());
                let kind = TripEventKind::Completed {
                    driver_id: driver.clone(),
                    rider_id: trip.rider.clone(),
                    vehicle_class: VehicleClass(trip.class.clone()),
                    fare: priced.fare,
                    surge: trip.surge,
                    distance_km: (distance * 10_000.0).round() / 10_000.0,
                    duration_s: (ts - started) as f64 / 1000.0,
                };
                self.event(&id, ts, kind);
                self.postings
                    .extend(trip_postings(&id, &trip.rider, driver, &priced, &tariff, ts));
            }
            (TripCommand::Cancel { by, reason, .. }, State::Offered { .. } | State::Matched(..)) => {
                let mut fee = None;
                let mut driver_id = None;
                if let State::Offered { attempt, expires, .. } = &trip.state {
                    self.timers.remove(&(*expires, id.clone(), *attempt));
                }
                if let State::Matched(driver) = &trip.state {
                    driver_id = Some(driver.clone());
                    let free = self.config.matching.free_cancellation.as_millis() as i64;
                    if *by == CancelledBy::Rider && trip.matched_at.is_some_and(|m| ts - m > free) {
                        let tariff = self.config.tariff[&trip.class].clone();
                        fee = Some(tariff.cancellation_fee);
                        self.postings
                            .extend(cancellation_postings(&id, &trip.rider, driver, &tariff, ts));
                    }
                }
                self.release(&id);
                self.trips.get_mut(&id).expect("the trip").state = State::Cancelled;
                self.event(
                    &id,
                    ts,
                    TripEventKind::Cancelled {
                        by: *by,
                        reason: reason.clone(),
                        driver_id,
                        fee,
                    },
                );
            }
            // Repeats of commands that already took effect change nothing.
            (
                TripCommand::Accept { driver_id, .. },
                State::Matched(d) | State::Started(d) | State::Completed(d),
            )
            | (TripCommand::Start { driver_id, .. }, State::Started(d) | State::Completed(d))
            | (TripCommand::Complete { driver_id, .. }, State::Completed(d))
                if driver_id == d => {}
            (TripCommand::Decline { driver_id, .. }, state)
                if trip.offered.contains(driver_id)
                    && !matches!(state, State::Offered { driver, .. } | State::Matched(driver) | State::Started(driver) | State::Completed(driver) if driver == driver_id) =>
                {}
            (TripCommand::Cancel { .. }, State::Cancelled) => {}
            _ => self.refuse(c),
        }
    }
}
