//! A synthetic city: drivers cruising and pinging, riders requesting trips, drivers answering
//! the offers they get (accept, decline, or let them time out), trips started and completed
//! (sometimes completed twice), late cancellations, top-ups, and a few late and duplicate pings.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fleetstream_schemas::{
    CancelledBy, DriverStatus, DriverStatusKind, GeoPoint, GpsPing, TripCommand, TripEventKind, VehicleClass,
    WalletCommand, time, topics,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use super::Generated;
use crate::config::JobConfig;
use crate::reference::ride::{RideInput, RideReference};

/// What to generate.
#[derive(Debug, Clone)]
pub struct CityParams {
    pub seed: u64,
    pub drivers: usize,
    pub trips: usize,
    /// Length of the simulated period.
    pub duration_s: i64,
    /// Seconds between a driver's pings.
    pub ping_interval_s: i64,
    /// Centre and half-size of the area, in degrees.
    pub center: (f64, f64),
    pub spread: (f64, f64),
    /// Start of the simulated period (ms).
    pub start_ms: i64,
}

impl CityParams {
    pub fn new(seed: u64, drivers: usize, trips: usize) -> Self {
        CityParams {
            seed,
            drivers,
            trips,
            duration_s: 3600,
            ping_interval_s: 10,
            center: (52.52, 13.405),
            spread: (0.12, 0.2),
            start_ms: 1_793_606_400_000, // 2026-11-02T07:00:00Z
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Online(usize),
    Ping(usize),
    Request(usize),
    Answer {
        trip: String,
        driver: String,
        accept: bool,
    },
    Start {
        trip: String,
        driver: String,
    },
    Complete {
        trip: String,
        driver: String,
        again: bool,
    },
    Cancel {
        trip: String,
    },
    TopUp(usize),
}

type Point = (f64, f64);

/// A drive from `from` to `to` between two instants (ms).
type Leg = (Point, Point, i64, i64);

struct DriverSim {
    id: String,
    lat: f64,
    lng: f64,
    /// While on a trip: (from, to, start ms, end ms).
    leg: Option<Leg>,
    pings: u64,
}

/// Generates a city; records are in event-time order except for the occasional late ping.
pub fn generate_city(params: &CityParams, config: &JobConfig) -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut reference = RideReference::new(config.clone());
    let mut queue: BinaryHeap<Reverse<(i64, u64, Action)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(i64, u64, Action)>>, at: i64, action: Action| {
        seq += 1;
        queue.push(Reverse((at, seq, action)));
    };
    let (clat, clng) = params.center;
    let (slat, slng) = params.spread;
    let mut drivers: Vec<DriverSim> = (0..params.drivers)
        .map(|i| DriverSim {
            id: format!("d{i:04}"),
            lat: clat + rng.gen_range(-slat..slat),
            lng: clng + rng.gen_range(-slng..slng),
            leg: None,
            pings: 0,
        })
        .collect();
    let start = params.start_ms;
    let end = start + params.duration_s * 1000;
    for i in 0..params.drivers {
        push(&mut queue, start + rng.gen_range(0..5_000), Action::Online(i));
    }
    for t in 0..params.trips {
        let at = start + 20_000 + rng.gen_range(0..(params.duration_s * 1000 - 60_000).max(1));
        push(&mut queue, at, Action::Request(t));
    }
    for r in 0..params.trips / 10 {
        push(
            &mut queue,
            start + rng.gen_range(0..params.duration_s * 1000),
            Action::TopUp(r),
        );
    }
    let by_id: HashMap<String, usize> = drivers
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    let mut trip_ends: HashMap<String, (Point, Point)> = HashMap::new();
    let mut out: Vec<Generated> = Vec::new();
    let mut seen_events = 0;
    let mut held: HashMap<usize, Generated> = HashMap::new();

    while let Some(Reverse((at, _, action))) = queue.pop() {
        if at > end + 900_000 {
            break;
        }
        let mut records: Vec<Generated> = Vec::new();
        match action {
            Action::Online(i) => {
                let status = DriverStatus {
                    driver_id: drivers[i].id.clone(),
                    status: DriverStatusKind::Online,
                    vehicle_class: VehicleClass("economy".into()),
                    ts: time::from_millis(at),
                };
                records.push(Generated::new(topics::DRIVER_STATUS, &drivers[i].id, &status, at));
                push(&mut queue, at + 500, Action::Ping(i));
            }
            Action::Ping(i) => {
                let d = &mut drivers[i];
                match d.leg {
                    Some((from, to, s, e)) if at >= s => {
                        let f = ((at - s) as f64 / (e - s).max(1) as f64).min(1.0);
                        d.lat = from.0 + (to.0 - from.0) * f;
                        d.lng = from.1 + (to.1 - from.1) * f;
                    }
                    _ => {
                        d.lat = (d.lat + rng.gen_range(-0.0006..0.0006)).clamp(clat - slat, clat + slat);
                        d.lng = (d.lng + rng.gen_range(-0.001..0.001)).clamp(clng - slng, clng + slng);
                    }
                }
                d.pings += 1;
                let ping = GpsPing {
                    event_id: format!("{}-{}", d.id, d.pings),
                    driver_id: d.id.clone(),
                    lat: round6(d.lat),
                    lng: round6(d.lng),
                    speed_kmh: Some(rng.gen_range(0.0..60.0_f64).round()),
                    heading: None,
                    ts: time::from_millis(at),
                };
                let record = Generated::new(topics::GPS_PINGS, &d.id, &ping, at);
                let roll: f64 = rng.r#gen();
                if let Some(late) = held.remove(&i) {
                    // The held ping arrives after this newer one: late, out of order.
                    records.push(record);
                    records.push(late);
                } else if roll < 0.01 {
                    // A duplicate delivery.
                    records.push(record.clone());
                    records.push(record);
                } else if roll < 0.02 && at < end {
                    held.insert(i, record);
                } else {
                    records.push(record);
                }
                if at < end {
                    push(
                        &mut queue,
                        at + params.ping_interval_s * 1000 + rng.gen_range(0..200),
                        Action::Ping(i),
                    );
                }
            }
            Action::Request(t) => {
                let pickup = (
                    clat + rng.gen_range(-slat..slat) * 0.9,
                    clng + rng.gen_range(-slng..slng) * 0.9,
                );
                let dropoff = (
                    pickup.0 + rng.gen_range(-0.03..0.03),
                    pickup.1 + rng.gen_range(-0.05..0.05),
                );
                let trip = format!("t{t:05}");
                trip_ends.insert(trip.clone(), (pickup, dropoff));
                let cmd = TripCommand::Request {
                    trip_id: trip.clone(),
                    rider_id: format!("r{:04}", rng.gen_range(0..(params.trips / 2).max(1))),
                    pickup: GeoPoint {
                        lat: round6(pickup.0),
                        lng: round6(pickup.1),
                    },
                    dropoff: GeoPoint {
                        lat: round6(dropoff.0),
                        lng: round6(dropoff.1),
                    },
                    vehicle_class: VehicleClass("economy".into()),
                    ts: time::from_millis(at),
                };
                records.push(Generated::new(topics::TRIP_COMMANDS, &trip, &cmd, at));
            }
            Action::Answer { trip, driver, accept } => {
                let cmd = if accept {
                    TripCommand::Accept {
                        trip_id: trip.clone(),
                        driver_id: driver,
                        ts: time::from_millis(at),
                    }
                } else {
                    TripCommand::Decline {
                        trip_id: trip.clone(),
                        driver_id: driver,
                        ts: time::from_millis(at),
                    }
                };
                records.push(Generated::new(topics::TRIP_COMMANDS, &trip, &cmd, at));
            }
            Action::Start { trip, driver } => {
                let (pickup, dropoff) = trip_ends[&trip];
                let duration = rng.gen_range(90_000..600_000);
                let i = by_id[&driver];
                drivers[i].lat = pickup.0;
                drivers[i].lng = pickup.1;
                drivers[i].leg = Some((pickup, dropoff, at, at + duration));
                let cmd = TripCommand::Start {
                    trip_id: trip.clone(),
                    driver_id: driver.clone(),
                    ts: time::from_millis(at),
                };
                records.push(Generated::new(topics::TRIP_COMMANDS, &trip, &cmd, at));
                push(
                    &mut queue,
                    at + duration,
                    Action::Complete {
                        trip,
                        driver,
                        again: false,
                    },
                );
            }
            Action::Complete { trip, driver, again } => {
                let cmd = TripCommand::Complete {
                    trip_id: trip.clone(),
                    driver_id: driver.clone(),
                    ts: time::from_millis(at),
                };
                records.push(Generated::new(topics::TRIP_COMMANDS, &trip, &cmd, at));
                if !again {
                    drivers[by_id[&driver]].leg = None;
                    if rng.gen_bool(0.15) {
                        push(
                            &mut queue,
                            at + 50,
                            Action::Complete {
                                trip,
                                driver,
                                again: true,
                            },
                        );
                    }
                }
            }
            Action::Cancel { trip } => {
                let cmd = TripCommand::Cancel {
                    trip_id: trip.clone(),
                    by: CancelledBy::Rider,
                    reason: Some("changed plans".into()),
                    ts: time::from_millis(at),
                };
                records.push(Generated::new(topics::TRIP_COMMANDS, &trip, &cmd, at));
            }
            Action::TopUp(r) => {
                let account = format!("rider:r{:04}", r);
                let cmd = WalletCommand::TopUp {
                    command_id: format!("top-up-{r}"),
                    account_id: account.clone(),
                    amount: Decimal::new(rng.gen_range(10..100) * 100, 2),
                    ts: time::from_millis(at),
                };
                records.push(Generated::new(topics::WALLET_COMMANDS, &account, &cmd, at));
            }
        }
        for record in records {
            reference.apply(&to_input(&record));
            out.push(record);
        }
        // Answer what the reference decided: drivers respond to offers, trips proceed.
        let events = reference.events_since(seen_events).to_vec();
        seen_events = reference.events.len();
        for event in events {
            let at = time::to_millis(&event.ts);
            match event.kind {
                TripEventKind::Offered { driver_id, .. } => {
                    let roll: f64 = rng.r#gen();
                    if roll < 0.8 {
                        let answer = Action::Answer {
                            trip: event.trip_id,
                            driver: driver_id,
                            accept: true,
                        };
                        push(&mut queue, at + rng.gen_range(1_000..8_000), answer);
                    } else if roll < 0.92 {
                        let answer = Action::Answer {
                            trip: event.trip_id,
                            driver: driver_id,
                            accept: false,
                        };
                        push(&mut queue, at + rng.gen_range(1_000..8_000), answer);
                    }
                    // Otherwise the offer times out.
                }
                TripEventKind::Matched { driver_id } => {
                    if rng.gen_bool(0.06) {
                        push(
                            &mut queue,
                            at + rng.gen_range(20_000..240_000),
                            Action::Cancel { trip: event.trip_id },
                        );
                    } else {
                        let start = Action::Start {
                            trip: event.trip_id,
                            driver: driver_id,
                        };
                        push(&mut queue, at + rng.gen_range(20_000..90_000), start);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The decoded form of a generated ride record.
pub fn to_input(record: &Generated) -> RideInput {
    let bytes = record.value_bytes();
    match record.topic {
        topics::GPS_PINGS => {
            RideInput::Ping(fleetstream_schemas::decode(&bytes).expect("generated pings are valid"))
        }
        topics::DRIVER_STATUS => {
            RideInput::Status(fleetstream_schemas::decode(&bytes).expect("valid status"))
        }
        topics::TRIP_COMMANDS => {
            RideInput::Command(fleetstream_schemas::decode(&bytes).expect("valid command"))
        }
        topics::WALLET_COMMANDS => {
            RideInput::Wallet(fleetstream_schemas::decode(&bytes).expect("valid top-up"))
        }
        other => panic!("not a ride topic: {other}"),
    }
}
