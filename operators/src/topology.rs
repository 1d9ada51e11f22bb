//! The ride and overtime jobs wired into one topology, and the handles of the stores that
//! queries read.

use std::sync::Arc;

use fleetstream_schemas::{
    DriverPosition, DriverStatus, GpsPing, LedgerEntry, OvertimeRecord, Punch, TripCommand, TripEvent,
    WalletCommand, time, topics,
};
use fleetstream_topology::store::KvStore;
use fleetstream_topology::{Record, Topology, TopologyBuilder, TopologyError, codec};

use crate::config::JobConfig;
use crate::input::decode;
use crate::location::{DriverInput, DriverOutput, DriverState, DriverStep};
use crate::matching::market::{MarketOutput, MarketStep};
use crate::messages::{DriverMsg, DriverView, MarketMsg};
use crate::overtime::{OvertimeStep, OvertimeStores};
use crate::settlement::wallet::{Wallet, WalletInput, WalletStep};
use crate::trips::router::{TripInput, TripRouter, TripView};
use crate::trips::state::TripState;

/// The stores queries read, by handle.
#[derive(Debug, Clone)]
pub struct Stores {
    pub drivers: KvStore<String, DriverState>,
    pub market_drivers: KvStore<String, DriverView>,
    pub market_trips: KvStore<String, TripState>,
    pub trips: KvStore<String, TripView>,
    pub wallets: KvStore<String, Wallet>,
    pub ledger: KvStore<String, LedgerEntry>,
    pub overtime: OvertimeStores,
}

/// A built topology with its store handles.
#[derive(Debug)]
pub struct Jobs {
    pub topology: Topology,
    pub stores: Stores,
}

/// Builds both jobs.
pub fn build(app_id: &str, config: &JobConfig) -> Result<Jobs, TopologyError> {
    let config = Arc::new(config.clone());
    let b = TopologyBuilder::new(app_id);
    let market_inbox =
        b.internal_topic::<String, MarketMsg>("market-inbox", codec::string(), codec::postcard());
    let driver_inbox =
        b.internal_topic::<String, DriverMsg>("driver-inbox", codec::string(), codec::postcard());

    // Drivers: location index, replication, arbitration, routes.
    let drivers = b.kv_store("drivers", codec::string(), codec::postcard::<DriverState>());
    let routes = b.kv_store("driver-routes", codec::bytes(), codec::postcard::<(f64, f64)>());
    let driver_out = b
        .source::<String, DriverInput>("drivers")
        .topic_with_time(
            &config.topic(topics::GPS_PINGS),
            codec::string(),
            |b| decode::<GpsPing>(b).map(DriverInput::Ping),
            driver_ts,
        )
        .topic_with_time(
            &config.topic(topics::DRIVER_STATUS),
            codec::string(),
            |b| decode::<DriverStatus>(b).map(DriverInput::Status),
            driver_ts,
        )
        .internal(&driver_inbox, DriverInput::Msg)
        .build()
        .process(
            "location",
            {
                let (config, drivers, routes) = (config.clone(), drivers.clone(), routes.clone());
                move || DriverStep::new(config.clone(), drivers.clone(), routes.clone())
            },
            &[drivers.id(), routes.id()],
        );
    driver_out
        .flat_map(|r| match r.value {
            DriverOutput::Market(market, msg) => vec![Record::new(market, msg, r.ts)],
            DriverOutput::Position(_) => Vec::new(),
        })
        .to_internal(&market_inbox);
    driver_out
        .flat_map(|r| match r.value {
            DriverOutput::Position(p) => vec![Record::new(r.key, p, r.ts)],
            DriverOutput::Market(..) => Vec::new(),
        })
        .to(
            &config.topic(topics::DRIVER_POSITIONS),
            codec::string(),
            codec::json::<DriverPosition>(),
        );

    // Trips: routing to markets, the trip view.
    let trip_routes = b.kv_store("trip-routes", codec::string(), codec::postcard::<String>());
    let trips = b.kv_store("trips", codec::string(), codec::postcard::<TripView>());
    b.source::<String, TripInput>("trips")
        .topic_with_time(
            &config.topic(topics::TRIP_COMMANDS),
            codec::string(),
            |b| decode::<TripCommand>(b).map(TripInput::Command),
            TripInput::ts,
        )
        .topic_with_time(
            &config.topic(topics::TRIP_EVENTS),
            codec::string(),
            |b| decode::<TripEvent>(b).map(TripInput::Event),
            TripInput::ts,
        )
        .build()
        .process(
            "trip-router",
            {
                let (config, trip_routes, trips) = (config.clone(), trip_routes.clone(), trips.clone());
                move || TripRouter::new(config.clone(), trip_routes.clone(), trips.clone())
            },
            &[trip_routes.id(), trips.id()],
        )
        .to_internal(&market_inbox);

    // Markets: matching, surge, the trip state machine, settlement.
    let market_drivers = b.kv_store("market-drivers", codec::string(), codec::postcard::<DriverView>());
    let market_trips = b.kv_store("market-trips", codec::string(), codec::postcard::<TripState>());
    // One entry per pickup cell and second (`surge::demand_key`); "market-demand" held a cell's
    // whole window in one entry.
    let demand = b.kv_store(
        "market-request-times",
        codec::string(),
        codec::postcard::<Vec<u16>>(),
    );
    let market_out = b
        .source::<String, MarketMsg>("markets")
        .internal(&market_inbox, |m| m)
        .build()
        .process(
            "market",
            {
                let (config, md, mt, dm) = (
                    config.clone(),
                    market_drivers.clone(),
                    market_trips.clone(),
                    demand.clone(),
                );
                move || MarketStep::new(config.clone(), md.clone(), mt.clone(), dm.clone())
            },
            &[market_drivers.id(), market_trips.id(), demand.id()],
        );
    market_out
        .flat_map(|r| match r.value {
            MarketOutput::Event(e) => vec![Record::new(r.key, e, r.ts)],
            _ => Vec::new(),
        })
        .to(
            &config.topic(topics::TRIP_EVENTS),
            codec::string(),
            codec::json::<TripEvent>(),
        );
    market_out
        .flat_map(|r| match r.value {
            MarketOutput::Posting(p) => vec![Record::new(p.account_id.clone(), p, r.ts)],
            _ => Vec::new(),
        })
        .to(
            &config.topic(topics::LEDGER_ENTRIES),
            codec::string(),
            codec::json::<LedgerEntry>(),
        );
    market_out
        .flat_map(|r| match r.value {
            MarketOutput::Driver(driver, msg) => vec![Record::new(driver, msg, r.ts)],
            _ => Vec::new(),
        })
        .to_internal(&driver_inbox);

    // Wallets: balances from postings, top-ups.
    let wallets = b.kv_store("wallets", codec::string(), codec::postcard::<Wallet>());
    let ledger = b.kv_store("ledger", codec::string(), codec::postcard::<LedgerEntry>());
    b.source::<String, WalletInput>("wallets")
        .topic_with_time(
            &config.topic(topics::LEDGER_ENTRIES),
            codec::string(),
            |b| decode::<LedgerEntry>(b).map(WalletInput::Entry),
            WalletInput::ts,
        )
        .topic_with_time(
            &config.topic(topics::WALLET_COMMANDS),
            codec::string(),
            |b| decode::<WalletCommand>(b).map(WalletInput::Command),
            WalletInput::ts,
        )
        .build()
        .process(
            "wallet",
            {
                let (wallets, ledger) = (wallets.clone(), ledger.clone());
                move || WalletStep::new(wallets.clone(), ledger.clone())
            },
            &[wallets.id(), ledger.id()],
        )
        .to(
            &config.topic(topics::LEDGER_ENTRIES),
            codec::string(),
            codec::json::<LedgerEntry>(),
        );

    // Overtime: punches into day and week windows.
    let overtime = OvertimeStores::declare(&b);
    b.source::<String, Punch>("timesheets")
        .topic_with_time(
            &config.topic(topics::TIMESHEET_PUNCHES),
            codec::string(),
            decode::<Punch>,
            |p: &Punch| time::to_millis(&p.ts),
        )
        .build()
        .process(
            "overtime",
            {
                let (config, stores) = (config.clone(), overtime.clone());
                move || OvertimeStep::new(config.clone(), stores.clone())
            },
            &overtime.ids(),
        )
        .to(
            &config.topic(topics::OVERTIME_RECORDS),
            codec::string(),
            codec::json::<OvertimeRecord>(),
        );

    let topology = b.build()?;
    Ok(Jobs {
        topology,
        stores: Stores {
            drivers,
            market_drivers,
            market_trips,
            trips,
            wallets,
            ledger,
            overtime,
        },
    })
}

fn driver_ts(input: &DriverInput) -> i64 {
    input.ts().unwrap_or_default()
}
