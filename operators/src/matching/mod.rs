//! Matching riders with drivers (DESIGN.md §4), partitioned by market.
//!
//! # Design
//!
//! A **market** is an H3 cell at a coarse resolution (`matching.market_resolution`, 5 by
//! default: about 250 km²). Matching is keyed by market, so markets spread over partitions
//! and instances, while everything one decision needs is in one task:
//!
//! 1. The **driver step** (keyed by driver, [`crate::location`]) replicates each driver's view
//!    (position, status, class, whether a trip holds it) to every market with a point within
//!    the matching radius of the driver, plus a margin. A market therefore sees every driver
//!    that could be a candidate for a pickup inside it — drivers across its borders too.
//! 2. The **trip step** (keyed by trip, [`crate::trips`]) sends each trip command to the market
//!    of the trip's pickup.
//! 3. The **market step** ([`market::MarketStep`]) holds the trips of its markets and an index
//!    of the drivers in reach, by resolution-9 cell. For a request it quotes surge, then looks
//!    for the nearest available driver by expanding H3 rings around the pickup's cell
//!    ([`candidates::MarketIndex::best`]: exact haversine, ties by driver id), and **claims**
//!    it from the driver step before offering the trip.
//! 4. The driver step **arbitrates** claims: a driver held by a trip (an open offer or an
//!    active trip) refuses every other claim. A refused market tries its next candidate.
//!    Offers time out by event-time timers; a decline or timeout releases the driver.
//!
//! # Why it is correct whatever the partition count
//!
//! - *Completeness*: a candidate for a pickup in market M lies within the radius of the
//!   pickup, hence within the radius of M; its view was replicated to M. The ring search
//!   visits every cell that can hold a point within the radius (conservative lower bounds in
//!   [`crate::geo`]), and stops early only once no unvisited cell can hold a closer driver. So
//!   the candidate is the minimum by (distance, driver id) over all drivers in reach —
//!   independent of where drivers and trips are partitioned.
//! - *No driver holds two trips*: every offer is preceded by a claim that the driver's own
//!   step grants only while no trip holds it. All claims for one driver go through one task,
//!   one at a time, so two markets reaching for the same driver at once cannot both win.
//! - *Determinism*: in a deterministic run (`fleetstream replay`, the test driver) every
//!   record is followed through all steps before the next, so a market's replica is exact when
//!   it decides and the result is that of a single-threaded reference, for 1 or 16
//!   partitions alike. In a live run steps overlap: a market may decide on a view a few
//!   milliseconds old and have a claim refused; it then moves on to the next candidate. The
//!   outcome can differ from the single-threaded order in such races, never in safety.

pub mod candidates;
pub mod market;
pub mod surge;
