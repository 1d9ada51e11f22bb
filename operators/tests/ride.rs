//! The ride job through the real topology with the test driver: each rule of DESIGN.md §4-5,
//! the tricky cases, and a property test against the naive reference for 1, 4 and 16
//! partitions.

use std::collections::BTreeMap;

use fleetstream_operators::config::JobConfig;
use fleetstream_operators::generate::Generated;
use fleetstream_operators::generate::city::{CityParams, generate_city, to_input};
use fleetstream_operators::geo;
use fleetstream_operators::reference::ride::RideReference;
use fleetstream_operators::topology::{self, Stores};
use fleetstream_schemas::{LedgerEntry, TripEvent, TripEventKind, topics};
use fleetstream_topology::TopologyTestDriver;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const T0: i64 = 1_793_606_400_000; // 2026-11-02T07:00:00Z

fn at(seconds: f64) -> i64 {
    T0 + (seconds * 1000.0) as i64
}

fn iso(ms: i64) -> String {
    fleetstream_schemas::time::format(&fleetstream_schemas::time::from_millis(ms))
}

struct City {
    driver: TopologyTestDriver,
    stores: Stores,
    pings: u64,
}

impl City {
    fn new(partitions: u32) -> City {
        City::with_config(JobConfig::default(), partitions)
    }

    fn with_config(config: JobConfig, partitions: u32) -> City {
        let jobs = topology::build("fs", &config).unwrap();
        City {
            driver: TopologyTestDriver::new(jobs.topology, partitions),
            stores: jobs.stores,
            pings: 0,
        }
    }

    fn online(&mut self, id: &str, ts: i64) {
        let v = json!({"driver_id": id, "status": "online", "vehicle_class": "economy", "ts": iso(ts)});
        self.driver.pipe_json(topics::DRIVER_STATUS, id, &v, ts);
    }

    fn ping(&mut self, id: &str, lat: f64, lng: f64, ts: i64) -> String {
        self.pings += 1;
        let event_id = format!("p{}", self.pings);
        self.ping_with_id(id, &event_id, lat, lng, ts);
        event_id
    }

    fn ping_with_id(&mut self, id: &str, event_id: &str, lat: f64, lng: f64, ts: i64) {
        let v = json!({"event_id": event_id, "driver_id": id, "lat": lat, "lng": lng, "ts": iso(ts)});
        self.driver.pipe_json(topics::GPS_PINGS, id, &v, ts);
    }

    fn driver_at(&mut self, id: &str, lat: f64, lng: f64, ts: i64) {
        self.online(id, ts);
        self.ping(id, lat, lng, ts);
    }

    fn request_json(trip: &str, pickup: (f64, f64), dropoff: (f64, f64), ts: i64) -> Value {
        json!({"type": "request", "trip_id": trip, "rider_id": format!("r-{trip}"),
               "pickup": {"lat": pickup.0, "lng": pickup.1}, "dropoff": {"lat": dropoff.0, "lng": dropoff.1},
               "vehicle_class": "economy", "ts": iso(ts)})
    }

    fn request(&mut self, trip: &str, pickup: (f64, f64), ts: i64) {
        let v = City::request_json(trip, pickup, (pickup.0 + 0.01, pickup.1 + 0.01), ts);
        self.driver.pipe_json(topics::TRIP_COMMANDS, trip, &v, ts);
    }

    fn command(&mut self, kind: &str, trip: &str, driver: &str, ts: i64) {
        let v = json!({"type": kind, "trip_id": trip, "driver_id": driver, "ts": iso(ts)});
        self.driver.pipe_json(topics::TRIP_COMMANDS, trip, &v, ts);
    }

    fn cancel(&mut self, trip: &str, by: &str, ts: i64) {
        let v = json!({"type": "cancel", "trip_id": trip, "by": by, "ts": iso(ts)});
        self.driver.pipe_json(topics::TRIP_COMMANDS, trip, &v, ts);
    }

    fn events(&mut self) -> Vec<TripEvent> {
        self.driver
            .read_output(topics::TRIP_EVENTS)
            .iter()
            .map(|o| o.parse())
            .collect()
    }

    /// The surges quoted by the requests since the last read of the events.
    fn surges(&mut self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| match &e.kind {
                TripEventKind::Requested { surge, .. } => Some(surge.to_string()),
                _ => None,
            })
            .collect()
    }

    fn postings(&mut self) -> Vec<LedgerEntry> {
        self.driver
            .read_output(topics::LEDGER_ENTRIES)
            .iter()
            .map(|o| o.parse())
            .collect()
    }

    fn dead_letters(&mut self) -> Vec<Value> {
        self.driver.read_dead_letters(topics::TRIP_COMMANDS)
    }
}

/// (type, driver) of each event.
fn summary(events: &[TripEvent]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .map(|e| (e.kind.name().to_string(), e.kind.driver_id().map(str::to_string)))
        .collect()
}

fn s(kind: &str, driver: Option<&str>) -> (String, Option<String>) {
    (kind.to_string(), driver.map(str::to_string))
}

const PICKUP: (f64, f64) = (52.52, 13.405);

/// A point `km` north of `from` whose haversine distance is at most `km`, as close as f64 gets.
fn north_of(from: (f64, f64), km: f64) -> (f64, f64) {
    let mut lat = from.0 + (km / geo::EARTH_RADIUS_KM).to_degrees();
    while geo::haversine_km(from.0, from.1, lat, from.1) > km {
        lat -= 1e-12;
    }
    (lat, from.1)
}

#[test]
fn a_driver_whose_last_ping_is_older_than_30_seconds_is_not_available() {
    let mut city = City::new(2);
    city.driver_at("d-stale", PICKUP.0 + 0.001, PICKUP.1, at(0.0));
    city.driver_at("d-fresh", PICKUP.0 + 0.01, PICKUP.1, at(1.0));
    // 31 s after d-stale's ping, exactly 30 s after d-fresh's: only d-fresh is available.
    city.request("t1", PICKUP, at(31.0));
    assert_eq!(
        summary(&city.events()),
        vec![s("requested", None), s("offered", Some("d-fresh"))]
    );
    city.request("t2", PICKUP, at(31.5));
    assert_eq!(
        summary(&city.events()),
        vec![s("requested", None), s("no_driver", None)]
    );
}

#[test]
fn a_driver_exactly_5_km_away_is_a_candidate_and_one_just_beyond_is_not() {
    let mut city = City::new(3);
    let edge = north_of(PICKUP, 5.0);
    assert!(geo::haversine_km(PICKUP.0, PICKUP.1, edge.0, edge.1) <= 5.0);
    let beyond = north_of(PICKUP, 5.001);
    city.driver_at("d-beyond", beyond.0, PICKUP.1 + 0.0001, at(0.0));
    city.request("t0", PICKUP, at(1.0));
    assert_eq!(
        summary(&city.events()),
        vec![s("requested", None), s("no_driver", None)]
    );
    city.driver_at("d-edge", edge.0, edge.1, at(2.0));
    city.request("t1", PICKUP, at(3.0));
    let events = city.events();
    assert_eq!(
        summary(&events),
        vec![s("requested", None), s("offered", Some("d-edge"))]
    );
    let TripEventKind::Offered {
        pickup_distance_km, ..
    } = events[1].kind
    else {
        panic!()
    };
    assert_eq!(pickup_distance_km, 5.0);
}

#[test]
fn ties_are_broken_on_driver_id() {
    let mut city = City::new(4);
    for id in ["d-c", "d-a", "d-b"] {
        city.driver_at(id, PICKUP.0 + 0.003, PICKUP.1 + 0.003, at(0.0));
    }
    city.request("t1", PICKUP, at(1.0));
    assert_eq!(summary(&city.events())[1], s("offered", Some("d-a")));
    city.command("decline", "t1", "d-a", at(2.0));
    assert_eq!(summary(&city.events()), vec![s("offered", Some("d-b"))]);
}

#[test]
fn decline_then_timeout_then_no_driver() {
    let mut city = City::new(2);
    city.driver_at("d1", PICKUP.0 + 0.001, PICKUP.1, at(0.0));
    city.driver_at("d2", PICKUP.0 + 0.002, PICKUP.1, at(0.0));
    city.driver_at("d3", PICKUP.0 + 0.003, PICKUP.1, at(0.0));
    city.driver_at("d4", PICKUP.0 + 0.004, PICKUP.1, at(0.0));
    city.request("t1", PICKUP, at(1.0));
    city.command("decline", "t1", "d1", at(3.0));
    // d2's offer times out 15 s after it was made; then d3's.
    city.driver.advance_time(at(17.9));
    let events = city.events();
    assert_eq!(
        summary(&events),
        vec![
            s("requested", None),
            s("offered", Some("d1")),
            s("offered", Some("d2"))
        ]
    );
    assert_eq!(events[2].ts.timestamp_millis(), at(3.0));
    city.driver.advance_time(at(18.0));
    let events = city.events();
    assert_eq!(summary(&events), vec![s("offered", Some("d3"))]);
    assert_eq!(events[0].ts.timestamp_millis(), at(18.0));
    city.driver.advance_time(at(33.0));
    let events = city.events();
    assert_eq!(
        summary(&events),
        vec![s("no_driver", None)],
        "three offers, then no driver although d4 is free"
    );
    let TripEventKind::NoDriver { offers } = events[0].kind else {
        panic!()
    };
    assert_eq!(offers, 3);
    // A late accept of an expired offer is refused with the reason.
    city.command("accept", "t1", "d2", at(34.0));
    let dlq = city.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert!(
        dlq[0]["error"]["message"].as_str().unwrap().contains("trip t1"),
        "{}",
        dlq[0]
    );
    // The drivers were released: d4 and the others can take a new trip.
    city.ping("d1", PICKUP.0 + 0.001, PICKUP.1, at(35.0));
    city.request("t2", PICKUP, at(36.0));
    assert_eq!(summary(&city.events())[1], s("offered", Some("d1")));
}

/// Two points on either side of a market border, and one on it.
fn across_a_market_border() -> ((f64, f64), (f64, f64), (f64, f64)) {
    let res = JobConfig::default().matching.market_resolution;
    let start = (52.40, 13.20);
    let mut previous = start;
    for step in 1..20_000 {
        let p = (start.0 + step as f64 * 0.00002, start.1 + step as f64 * 0.00003);
        if geo::market_of(p.0, p.1, res) != geo::market_of(previous.0, previous.1, res) {
            let a = (previous.0 - 0.004, previous.1 - 0.006);
            let b = (p.0 + 0.004, p.1 + 0.006);
            assert_ne!(geo::market_of(a.0, a.1, res), geo::market_of(b.0, b.1, res));
            return (a, b, p);
        }
        previous = p;
    }
    panic!("no border found");
}

#[test]
fn the_same_driver_requested_at_once_in_two_markets_gets_one_trip() {
    let (a, b, border) = across_a_market_border();
    for partitions in [1, 4] {
        let mut city = City::new(partitions);
        city.driver_at("d-border", border.0, border.1, at(0.0));
        city.driver_at("d-far", border.0 + 0.02, border.1, at(0.0));
        let ra = City::request_json("t-a", a, (a.0 - 0.01, a.1), at(5.0));
        let rb = City::request_json("t-b", b, (b.0 + 0.01, b.1), at(5.0));
        city.driver.pipe_concurrently(&[
            (
                topics::TRIP_COMMANDS,
                "t-a",
                serde_json::to_vec(&ra).unwrap(),
                at(5.0),
            ),
            (
                topics::TRIP_COMMANDS,
                "t-b",
                serde_json::to_vec(&rb).unwrap(),
                at(5.0),
            ),
        ]);
        let events = city.events();
        let offers: Vec<(String, String)> = events
            .iter()
            .filter_map(|e| e.kind.driver_id().map(|d| (e.trip_id.clone(), d.to_string())))
            .collect();
        let border_offers: Vec<&(String, String)> = offers.iter().filter(|(_, d)| d == "d-border").collect();
        assert_eq!(
            border_offers.len(),
            1,
            "one trip wins the border driver: {offers:?}"
        );
        let loser = if border_offers[0].0 == "t-a" { "t-b" } else { "t-a" };
        assert!(
            offers.contains(&(loser.to_string(), "d-far".to_string())),
            "the other trip moves on to the next candidate: {offers:?}"
        );
        // Both accept; both are matched, each with its own driver.
        city.command("accept", &border_offers[0].0.clone(), "d-border", at(8.0));
        city.command("accept", loser, "d-far", at(8.0));
        let matched: Vec<String> = city
            .events()
            .iter()
            .filter(|e| e.kind.name() == "matched")
            .map(|e| e.kind.driver_id().unwrap().into())
            .collect();
        assert_eq!(matched.len(), 2);
        assert_ne!(matched[0], matched[1]);
    }
}

#[test]
fn retried_commands_change_nothing_and_each_trip_settles_once() {
    let mut city = City::new(3);
    city.driver_at("d1", PICKUP.0 + 0.001, PICKUP.1, at(0.0));
    city.request("t1", PICKUP, at(1.0));
    city.command("accept", "t1", "d1", at(3.0));
    city.command("accept", "t1", "d1", at(3.1));
    city.command("start", "t1", "d1", at(10.0));
    city.command("start", "t1", "d1", at(10.1));
    city.ping("d1", PICKUP.0 + 0.01, PICKUP.1, at(60.0));
    city.command("complete", "t1", "d1", at(120.0));
    city.command("complete", "t1", "d1", at(120.05));
    let kinds: Vec<String> = city.events().iter().map(|e| e.kind.name().to_string()).collect();
    assert_eq!(
        kinds,
        vec!["requested", "offered", "matched", "started", "completed"]
    );
    let postings = city.postings();
    assert_eq!(postings.len(), 3);
    assert_eq!(postings.iter().map(|p| p.amount).sum::<Decimal>(), Decimal::ZERO);
    assert!(city.dead_letters().is_empty(), "retries are not errors");
    // Still exactly once after the state is lost and restored.
    city.driver.restart_with_empty_disk();
    city.command("complete", "t1", "d1", at(121.0));
    assert!(city.events().is_empty());
    assert!(city.postings().is_empty());
    let wallet = city
        .driver
        .get(&city.stores.wallets, &"driver:d1".to_string())
        .unwrap();
    assert_eq!(wallet.postings, 1);
}

#[test]
fn invalid_transitions_go_to_the_dlq_naming_the_trip_and_the_reason() {
    let mut city = City::new(2);
    city.driver_at("d1", PICKUP.0 + 0.001, PICKUP.1, at(0.0));
    city.driver_at("d2", PICKUP.0 + 0.002, PICKUP.1, at(0.0));
    city.request("t1", PICKUP, at(1.0));
    city.command("start", "t1", "d1", at(2.0)); // before the match
    city.command("accept", "t1", "d1", at(3.0));
    city.command("start", "t1", "d1", at(4.0));
    city.command("complete", "t1", "d2", at(50.0)); // by another driver
    city.command("complete", "t1", "d1", at(60.0));
    city.cancel("t1", "rider", at(70.0)); // after completion
    city.command("start", "t-unknown", "d1", at(71.0));
    let dlq = city.dead_letters();
    let reasons: Vec<String> = dlq
        .iter()
        .map(|d| d["error"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].contains("trip t1") && reasons[0].contains("start") && reasons[0].contains("offered"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("trip t1") && reasons[1].contains("d1") && reasons[1].contains("d2"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("trip t1") && reasons[2].contains("completed"),
        "{}",
        reasons[2]
    );
    assert!(reasons[3].contains("never requested"), "{}", reasons[3]);
    assert_eq!(dlq[1]["error"]["field"], "driver_id");
    assert_eq!(
        dlq[1]["value"]["driver_id"], "d2",
        "the refused command is kept as it was"
    );
    let completed: Vec<TripEvent> = city
        .events()
        .into_iter()
        .filter(|e| e.kind.name() == "completed")
        .collect();
    assert_eq!(completed.len(), 1);
}

#[test]
fn pings_out_of_order_never_move_a_driver_back_and_duplicates_are_ignored() {
    let mut city = City::new(2);
    city.online("d1", at(0.0));
    city.ping_with_id("d1", "a", 52.50, 13.40, at(10.0));
    city.ping_with_id("d1", "b", 52.60, 13.40, at(5.0)); // older, arrives later
    city.ping_with_id("d1", "a", 52.70, 13.40, at(11.0)); // a duplicate id
    let state = city.driver.get(&city.stores.drivers, &"d1".to_string()).unwrap();
    let p = state.position.unwrap();
    assert_eq!((p.lat, p.ts), (52.50, at(10.0)));
    let positions = city.driver.read_output(topics::DRIVER_POSITIONS);
    assert_eq!(positions.len(), 1, "only the accepted ping is published");
    // The stale-looking ping at 5 s did not refresh availability either.
    city.request("t1", (52.50, 13.40), at(40.5));
    assert_eq!(summary(&city.events())[1], s("no_driver", None));
}

#[test]
fn surge_is_demand_over_supply_in_the_pickup_cell_rounded_down() {
    let mut city = City::new(2);
    city.driver_at("d1", PICKUP.0, PICKUP.1, at(0.0));
    // 1 request, 1 available driver in the cell: 1.0. The driver is then held by the offer.
    city.request("t1", PICKUP, at(1.0));
    // 2 requests within 5 min, no available driver (max(1, 0) = 1): 2.0.
    city.request("t2", PICKUP, at(2.0));
    city.request("t3", PICKUP, at(3.0));
    city.request("t4", PICKUP, at(4.0));
    assert_eq!(city.surges(), vec!["1.0", "2.0", "3.0", "3.0"], "clamped at 3.0");
    // More than 5 minutes after t1..t3 (t4 at 4 s is out too at 304.5 s): demand 1.
    city.request("t5", PICKUP, at(304.5));
    assert_eq!(city.surges(), vec!["1.0"]);
    // The surge quoted at request is the one the fare uses.
    let quoted = Decimal::new(20, 1);
    assert_eq!(quoted.to_string(), "2.0");
}

#[test]
fn surge_demand_survives_restarts_from_disk_and_from_the_changelog() {
    let mut city = City::new(2);
    // No driver anywhere: the surge is the demand (up to 3.0).
    city.request("t1", PICKUP, at(1.0));
    city.driver.restart();
    city.request("t2", PICKUP, at(2.0));
    assert_eq!(city.surges(), vec!["1.0", "2.0"], "t1 is kept across a restart");
    city.driver.restart_with_empty_disk();
    // Restored from the changelog: t2 counts for t3, t1 (more than 5 min earlier) does not.
    city.request("t3", PICKUP, at(301.5));
    city.request("t4", PICKUP, at(302.0));
    assert_eq!(
        city.surges(),
        vec!["2.0", "2.0"],
        "t3 counts t2 and itself; t4 counts t3 and itself (t2 is exactly 5 min earlier)"
    );
}

#[test]
fn a_rider_cancelling_late_pays_the_fee_and_an_early_one_does_not() {
    let mut city = City::new(2);
    city.driver_at("d1", PICKUP.0 + 0.001, PICKUP.1, at(0.0));
    city.driver_at("d2", PICKUP.0 + 0.002, PICKUP.1, at(0.0));
    city.request("t1", PICKUP, at(1.0));
    city.command("accept", "t1", "d1", at(2.0));
    city.cancel("t1", "rider", at(2.0 + 120.0)); // exactly 2 min: free
    assert!(city.postings().is_empty());
    city.ping("d1", PICKUP.0 + 0.001, PICKUP.1, at(125.0));
    city.ping("d2", PICKUP.0 + 0.002, PICKUP.1, at(125.0));
    city.request("t2", PICKUP, at(126.0));
    city.command("accept", "t2", "d1", at(127.0));
    city.cancel("t2", "rider", at(127.0 + 120.001));
    let postings = city.postings();
    let amounts: BTreeMap<String, String> = postings
        .iter()
        .map(|p| (p.account_id.clone(), p.amount.to_string()))
        .collect();
    assert_eq!(
        amounts,
        BTreeMap::from([
            ("rider:r-t2".to_string(), "-5.00".to_string()),
            ("driver:d1".to_string(), "4.00".to_string()),
            ("platform:revenue".to_string(), "1.00".to_string())
        ])
    );
    assert!(postings.iter().all(|p| p.txn_id == "t2"));
}

#[test]
fn wallets_sum_postings_and_top_ups() {
    let mut city = City::new(3);
    let top_up = json!({"type": "top_up", "command_id": "c1", "account_id": "rider:r-t1", "amount": "20.00", "ts": iso(at(0.0))});
    city.driver
        .pipe_json(topics::WALLET_COMMANDS, "rider:r-t1", &top_up, at(0.0));
    city.driver
        .pipe_json(topics::WALLET_COMMANDS, "rider:r-t1", &top_up, at(0.5)); // retried
    city.driver_at("d1", PICKUP.0 + 0.001, PICKUP.1, at(0.0));
    city.request("t1", PICKUP, at(1.0));
    city.command("accept", "t1", "d1", at(2.0));
    city.command("start", "t1", "d1", at(3.0));
    city.command("complete", "t1", "d1", at(63.0));
    let postings = city.postings();
    let fare_paid: Decimal = postings
        .iter()
        .filter(|p| p.account_id == "rider:r-t1" && p.txn_id == "t1")
        .map(|p| p.amount)
        .sum();
    let rider = city
        .driver
        .get(&city.stores.wallets, &"rider:r-t1".to_string())
        .unwrap();
    assert_eq!(
        rider.balance,
        Decimal::new(2000, 2) + fare_paid,
        "one top-up counted, one fare"
    );
    let total: Decimal = city
        .driver
        .all(&city.stores.wallets)
        .iter()
        .map(|(_, w)| w.balance)
        .sum();
    assert_eq!(total, Decimal::ZERO, "the ledger balances");
    let clearing = city
        .driver
        .get(&city.stores.wallets, &"clearing:top_ups".to_string())
        .unwrap();
    assert_eq!(clearing.balance, Decimal::new(-2000, 2));
}

#[test]
fn an_unknown_vehicle_class_is_refused() {
    let mut city = City::new(1);
    let mut v = City::request_json("t1", PICKUP, PICKUP, at(1.0));
    v["vehicle_class"] = json!("limousine");
    city.driver.pipe_json(topics::TRIP_COMMANDS, "t1", &v, at(1.0));
    let dlq = city.dead_letters();
    assert_eq!(dlq[0]["error"]["field"], "vehicle_class");
    assert!(city.events().is_empty());
}

// --- against the reference --------------------------------------------------------------

fn run_topology(
    records: &[Generated],
    config: &JobConfig,
    partitions: u32,
) -> (Vec<TripEvent>, Vec<LedgerEntry>) {
    let jobs = topology::build("fs", config).unwrap();
    let mut driver = TopologyTestDriver::new(jobs.topology, partitions);
    for r in records {
        driver.pipe(r.topic, &r.key, r.value_bytes(), r.ts);
    }
    let events = driver
        .read_output(topics::TRIP_EVENTS)
        .iter()
        .map(|o| o.parse())
        .collect();
    let postings = driver
        .read_output(topics::LEDGER_ENTRIES)
        .iter()
        .map(|o| o.parse())
        .collect();
    (events, postings)
}

fn run_reference(records: &[Generated], config: &JobConfig) -> (Vec<TripEvent>, Vec<LedgerEntry>) {
    let mut reference = RideReference::new(config.clone());
    for r in records {
        reference.apply(&to_input(r));
    }
    (reference.events, reference.postings)
}

fn by_trip(events: &[TripEvent]) -> BTreeMap<String, Vec<TripEvent>> {
    let mut out: BTreeMap<String, Vec<TripEvent>> = BTreeMap::new();
    for e in events {
        out.entry(e.trip_id.clone()).or_default().push(e.clone());
    }
    out
}

fn sorted(mut postings: Vec<LedgerEntry>) -> Vec<LedgerEntry> {
    postings.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
    postings
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn a_random_city_matches_the_reference_for_1_4_and_16_partitions(
        seed in any::<u64>(),
        drivers in 3usize..40,
        trips in 2usize..30,
        spread in 0.02f64..0.12,
    ) {
        let config = JobConfig::default();
        let mut params = CityParams::new(seed, drivers, trips);
        params.duration_s = 900;
        params.ping_interval_s = 5;
        params.spread = (spread, spread * 1.6);
        let records = generate_city(&params, &config);
        let (want_events, want_postings) = run_reference(&records, &config);
        for partitions in [1, 4, 16] {
            let (events, postings) = run_topology(&records, &config, partitions);
            prop_assert_eq!(by_trip(&events), by_trip(&want_events), "partitions {}", partitions);
            prop_assert_eq!(sorted(postings), sorted(want_postings.clone()), "partitions {}", partitions);
        }
    }
}
