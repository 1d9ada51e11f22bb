//! A market's drivers, indexed by H3 cell, and the search for the best available candidate.

use std::sync::Arc;

use foldhash::HashMap;

use h3o::{CellIndex, Resolution};

use crate::geo;
use crate::messages::DriverView;

/// What makes a driver available (DESIGN.md §4): online, holding no trip, and pinged at most
/// `freshness_ms` before `at`.
#[derive(Debug, Clone, Copy)]
pub struct Availability {
    /// The decision's event time.
    pub at: i64,
    /// Longest allowed age of the last ping, ms.
    pub freshness_ms: i64,
}

/// A candidate: a driver and its distance to the pickup.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub driver_id: String,
    pub distance_km: f64,
}

/// What the search needs of a driver: its view without its strings. The id is the index's
/// key, the vehicle class a place in the index's table of classes, and the trip holding the
/// driver only whether there is one (a market can hold millions of drivers).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    lat: f64,
    lng: f64,
    /// [`geo::unit_vector`] of the position: the search's cheap first comparison.
    unit: [f64; 3],
    cell9: u64,
    cell7: u64,
    ping_ts: i64,
    /// Place in `classes`, or [`NO_CLASS`].
    class: u32,
    online: bool,
    busy: bool,
}

const NO_CLASS: u32 = u32::MAX;

impl Slot {
    fn available(&self, availability: &Availability) -> bool {
        self.online && !self.busy && availability.at - self.ping_ts <= availability.freshness_ms
    }
}

/// A driver the index holds: its id beside its slot.
#[derive(Debug, Clone)]
struct Entry {
    id: Arc<str>,
    slot: Slot,
}

/// The drivers one market can match: its own and those near its borders.
///
/// Each driver has a place in `entries`; the id map and both cell lists hold that place, so
/// the search and the supply read drivers straight from the cell lists, without hashing an
/// id. A place freed by a driver leaving the market is reused by the next one to arrive.
///
/// The cell lists are unordered: the search takes the minimum by (distance, id) and the
/// supply is a count, so neither depends on the order in which drivers were met.
#[derive(Debug, Default, Clone)]
pub struct MarketIndex {
    places: HashMap<Arc<str>, u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    by_cell9: HashMap<u64, Vec<u32>>,
    by_cell7: HashMap<u64, Vec<u32>>,
    classes: Vec<Arc<str>>,
}

/// Takes `place` out of `cell`'s list, and the list out of the map once empty.
fn unlist(index: &mut HashMap<u64, Vec<u32>>, cell: u64, place: u32) {
    if let Some(places) = index.get_mut(&cell) {
        if let Some(at) = places.iter().position(|held| *held == place) {
            places.swap_remove(at);
        }
        if places.is_empty() {
            index.remove(&cell);
        }
    }
}

impl MarketIndex {
    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    fn class_of(&mut self, class: Option<&str>) -> u32 {
        let Some(class) = class else {
            return NO_CLASS;
        };
        match self.classes.iter().position(|c| &**c == class) {
            Some(place) => place as u32,
            None => {
                self.classes.push(Arc::from(class));
                self.classes.len() as u32 - 1
            }
        }
    }

    fn slot(&mut self, view: &DriverView) -> Slot {
        Slot {
            lat: view.lat,
            lng: view.lng,
            unit: geo::unit_vector(view.lat, view.lng),
            cell9: view.cell9,
            cell7: view.cell7,
            ping_ts: view.ping_ts,
            class: self.class_of(view.vehicle_class.as_deref()),
            online: view.online,
            busy: view.busy.is_some(),
        }
    }

    pub fn upsert(&mut self, view: DriverView) {
        let slot = self.slot(&view);
        self.put(view.driver_id, slot);
    }

    fn put(&mut self, id: impl AsRef<str> + Into<Arc<str>>, slot: Slot) {
        if let Some(&place) = self.places.get(id.as_ref()) {
            // Most pings leave a driver in the cells it was in: only the slot changes.
            let old = std::mem::replace(&mut self.entries[place as usize].slot, slot);
            if old.cell9 != slot.cell9 {
                unlist(&mut self.by_cell9, old.cell9, place);
                self.by_cell9.entry(slot.cell9).or_default().push(place);
            }
            if old.cell7 != slot.cell7 {
                unlist(&mut self.by_cell7, old.cell7, place);
                self.by_cell7.entry(slot.cell7).or_default().push(place);
            }
            return;
        }
        let id: Arc<str> = id.into();
        let entry = Entry { id: id.clone(), slot };
        let place = match self.free.pop() {
            Some(place) => {
                self.entries[place as usize] = entry;
                place
            }
            None => {
                self.entries.push(entry);
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 drivers in a market")
            }
        };
        self.places.insert(id, place);
        self.by_cell9.entry(slot.cell9).or_default().push(place);
        self.by_cell7.entry(slot.cell7).or_default().push(place);
    }

    pub fn remove(&mut self, driver_id: &str) {
        let Some(place) = self.places.remove(driver_id) else {
            return;
        };
        let old = self.entries[place as usize].slot;
        unlist(&mut self.by_cell9, old.cell9, place);
        unlist(&mut self.by_cell7, old.cell7, place);
        self.free.push(place);
    }

    /// The drivers listed in a cell.
    fn listed<'a>(&'a self, places: &'a [u32]) -> impl Iterator<Item = &'a Entry> + 'a {
        places.iter().map(|place| &self.entries[*place as usize])
    }

    /// Available drivers whose last ping lies in the resolution-7 cell (surge supply).
    pub fn supply(&self, cell7: u64, availability: &Availability) -> usize {
        self.by_cell7.get(&cell7).map_or(0, |places| {
            self.listed(places)
                .filter(|e| e.slot.available(availability))
                .count()
        })
    }

    /// The nearest available driver of `class` within `radius_km` of the pickup, ties broken
    /// by driver id, skipping `excluded`.
    ///
    /// Rings of resolution-9 cells are searched outwards from the pickup's cell. Once a
    /// candidate at distance `d` is found, the search continues only while a ring could still
    /// hold a driver at `d` or closer ([`geo::ring_lower_bound_km`]), and never beyond the
    /// rings that cover the radius — so the result is exactly the minimum by
    /// (haversine distance, driver id) over all drivers in reach. Within a ring, a driver
    /// whose chord to the pickup is certainly longer than the best one's
    /// ([`geo::chord2_beyond`]) is passed over without computing its haversine distance: it
    /// could neither beat the best nor tie with it.
    pub fn best(
        &self,
        pickup: (f64, f64),
        class: &str,
        radius_km: f64,
        availability: &Availability,
        excluded: &dyn Fn(&str) -> bool,
    ) -> Option<Candidate> {
        // A class no driver of this market has: nobody to find.
        let class = self.classes.iter().position(|c| &**c == class)? as u32;
        let center: CellIndex = geo::cell9(pickup.0, pickup.1);
        let last_ring = geo::rings_to_cover(Resolution::Nine, radius_km);
        let pickup_unit = geo::unit_vector(pickup.0, pickup.1);
        let mut best: Option<Candidate> = None;
        let mut beyond = f64::INFINITY;
        for k in 0..=last_ring {
            if let Some(b) = &best
                && geo::ring_lower_bound_km(Resolution::Nine, k) > b.distance_km
            {
                break;
            }
            if geo::ring_lower_bound_km(Resolution::Nine, k) > radius_km {
                break;
            }
            for cell in geo::ring(center, k) {
                let Some(places) = self.by_cell9.get(&u64::from(cell)) else {
                    continue;
                };
                for Entry { id, slot } in self.listed(places) {
                    let id: &str = id;
                    if slot.class != class || !slot.available(availability) {
                        continue;
                    }
                    let chord2 = geo::chord2(pickup_unit, slot.unit);
                    if chord2 > beyond || excluded(id) {
                        continue;
                    }
                    let d = geo::haversine_km(pickup.0, pickup.1, slot.lat, slot.lng);
                    if d > radius_km {
                        continue;
                    }
                    let better = match &best {
                        None => true,
                        Some(b) => d < b.distance_km || (d == b.distance_km && id < b.driver_id.as_str()),
                    };
                    if better {
                        best = Some(Candidate {
                            driver_id: id.to_string(),
                            distance_km: d,
                        });
                        beyond = geo::chord2_beyond(chord2);
                    }
                }
            }
        }
        best
    }
}

/// Builds a market's index from many views in one piece (when a task opens): the views are
/// held as compactly as the index holds them, and the index's table is sized once for all of
/// them. Built one upsert at a time, an index of a million drivers grows (and copies) its
/// table twenty times over.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    index: MarketIndex,
    pending: Vec<(Arc<str>, Slot)>,
}

impl IndexBuilder {
    /// Adds to `index`; a view of a driver it holds replaces the driver's.
    pub fn new(index: MarketIndex) -> Self {
        IndexBuilder {
            index,
            pending: Vec::new(),
        }
    }

    /// Adds a view; of a driver's views, the last one pushed wins.
    pub fn push(&mut self, view: DriverView) {
        let slot = self.index.slot(&view);
        self.pending.push((Arc::from(view.driver_id), slot));
    }

    pub fn build(self) -> MarketIndex {
        let IndexBuilder { mut index, pending } = self;
        index.places.reserve(pending.len());
        index.entries.reserve(pending.len());
        for (id, slot) in pending {
            index.put(id, slot);
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn view(id: &str, lat: f64, lng: f64, ping_ts: i64) -> DriverView {
        DriverView {
            driver_id: id.into(),
            lat,
            lng,
            cell9: geo::cell9(lat, lng).into(),
            cell7: geo::cell(lat, lng, Resolution::Seven).into(),
            ping_ts,
            online: true,
            vehicle_class: Some("economy".into()),
            busy: None,
        }
    }

    fn admits(availability: &Availability, view: &DriverView) -> bool {
        view.online && view.busy.is_none() && availability.at - view.ping_ts <= availability.freshness_ms
    }

    /// The index's cells as sets of ids (its lists are unordered).
    fn cells(index: &MarketIndex, cells: &HashMap<u64, Vec<u32>>) -> BTreeMap<u64, BTreeSet<String>> {
        cells
            .iter()
            .map(|(cell, places)| (*cell, index.listed(places).map(|e| e.id.to_string()).collect()))
            .collect()
    }

    /// What the index holds of a driver, as the view it was given would make it.
    fn held(index: &MarketIndex, id: &str) -> Option<(Slot, Option<String>)> {
        index.places.get(id).map(|place| {
            let slot = &index.entries[*place as usize].slot;
            let class = index.classes.get(slot.class as usize).map(|c| c.to_string());
            (Slot { class: 0, ..*slot }, class)
        })
    }

    fn expected(view: &DriverView) -> (Slot, Option<String>) {
        let slot = MarketIndex::default().slot(view);
        (Slot { class: 0, ..slot }, view.vehicle_class.clone())
    }

    /// The best candidate by brute force over the views the index was given.
    fn brute_force(
        views: &BTreeMap<String, DriverView>,
        pickup: (f64, f64),
        availability: &Availability,
    ) -> Option<Candidate> {
        views
            .values()
            .filter(|v| admits(availability, v) && v.vehicle_class.as_deref() == Some("economy"))
            .map(|v| Candidate {
                driver_id: v.driver_id.clone(),
                distance_km: geo::haversine_km(pickup.0, pickup.1, v.lat, v.lng),
            })
            .filter(|c| c.distance_km <= 5.0)
            .min_by(|a, b| {
                a.distance_km
                    .total_cmp(&b.distance_km)
                    .then_with(|| a.driver_id.cmp(&b.driver_id))
            })
    }

    #[test]
    fn ring_search_equals_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let availability = Availability {
            at: 1_000,
            freshness_ms: 30_000,
        };
        for round in 0..50 {
            let mut index = MarketIndex::default();
            let mut views = BTreeMap::new();
            for i in 0..rng.gen_range(0..60) {
                let lat = 52.52 + rng.gen_range(-0.08..0.08);
                let lng = 13.40 + rng.gen_range(-0.12..0.12);
                let v = view(&format!("d{i:03}"), lat, lng, rng.gen_range(-40_000..1_000));
                views.insert(v.driver_id.clone(), v.clone());
                index.upsert(v);
            }
            // Later pings: some stay in their cells, some move, some go stale or busy.
            for _ in 0..rng.gen_range(0..60) {
                let id = format!("d{:03}", rng.gen_range(0..60));
                let Some(mut v) = views.get(&id).cloned() else {
                    continue;
                };
                let step = if rng.gen_bool(0.5) { 0.00002 } else { 0.02 };
                v.lat += rng.gen_range(-step..step);
                v.lng += rng.gen_range(-step..step);
                v.cell9 = geo::cell9(v.lat, v.lng).into();
                v.cell7 = geo::cell(v.lat, v.lng, Resolution::Seven).into();
                v.ping_ts = rng.gen_range(-40_000..1_000);
                if rng.gen_bool(0.1) {
                    v.busy = Some("t".into());
                }
                if rng.gen_bool(0.1) {
                    v.vehicle_class = Some("comfort".into());
                }
                views.insert(id, v.clone());
                index.upsert(v);
            }
            // Some drivers leave the market.
            for _ in 0..rng.gen_range(0..10) {
                let id = format!("d{:03}", rng.gen_range(0..60));
                views.remove(&id);
                index.remove(&id);
            }
            // Newcomers take the places of those who left.
            for i in 0..rng.gen_range(0..10) {
                let v = view(
                    &format!("n{i}"),
                    52.52 + rng.gen_range(-0.08..0.08),
                    13.40 + rng.gen_range(-0.12..0.12),
                    rng.gen_range(-40_000..1_000),
                );
                views.insert(v.driver_id.clone(), v.clone());
                index.upsert(v);
            }
            assert_eq!(index.len(), views.len());
            let pickup = (
                52.52 + rng.gen_range(-0.05..0.05),
                13.40 + rng.gen_range(-0.05..0.05),
            );
            let found = index.best(pickup, "economy", 5.0, &availability, &|_| false);
            assert_eq!(found, brute_force(&views, pickup, &availability), "round {round}");
            // Supply in every cell a driver is in, and in the pickup's.
            let pickup_cell7 = geo::cell(pickup.0, pickup.1, Resolution::Seven).into();
            let cells7: BTreeSet<u64> = views.values().map(|v| v.cell7).chain([pickup_cell7]).collect();
            for cell7 in cells7 {
                let supply = views
                    .values()
                    .filter(|v| v.cell7 == cell7 && admits(&availability, v))
                    .count();
                assert_eq!(index.supply(cell7, &availability), supply, "round {round}");
            }
        }
    }

    /// Drivers sharing positions, a few ulps apart or at the pickup itself: ties by distance
    /// go to the smallest id, as brute force finds, however the search skips drivers.
    #[test]
    fn ties_and_near_ties_are_broken_by_id() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        let availability = Availability {
            at: 1_000,
            freshness_ms: 30_000,
        };
        // A point within about a kilometre of the centre.
        let near = |rng: &mut rand::rngs::StdRng| {
            (
                52.52 + rng.gen_range(-0.01..0.01),
                13.40 + rng.gen_range(-0.01..0.01),
            )
        };
        for round in 0..200 {
            let spots: Vec<(f64, f64)> = (0..rng.gen_range(1..6)).map(|_| near(&mut rng)).collect();
            let pickup = if rng.gen_bool(0.3) {
                spots[0]
            } else {
                near(&mut rng)
            };
            let mut index = MarketIndex::default();
            let mut views = BTreeMap::new();
            // Ids in random order of insertion, so the smallest is not always met first.
            for i in 0..rng.gen_range(1..80) {
                let (lat, lng) = spots[rng.gen_range(0..spots.len())];
                let nudge = match rng.gen_range(0..3) {
                    0 => 0.0,
                    1 => lat * f64::EPSILON * f64::from(rng.gen_range(1..8)),
                    _ => 1e-9,
                };
                let id = format!("d{:03}", rng.gen_range(0..1000) * 100 + i);
                let v = view(&id, lat + nudge, lng, rng.gen_range(-35_000..1_000));
                views.insert(v.driver_id.clone(), v.clone());
                index.upsert(v);
            }
            let found = index.best(pickup, "economy", 5.0, &availability, &|_| false);
            assert_eq!(found, brute_force(&views, pickup, &availability), "round {round}");
        }
    }

    /// An index built in one piece is the one upserts build, repeats, moves and a driver the
    /// index already held included.
    #[test]
    fn a_built_index_is_what_upserts_build() {
        let views: Vec<DriverView> = (0..500)
            .map(|i| {
                let id = format!("d{:03}", i % 400);
                let step = if i < 400 { 0.0 } else { 0.03 };
                let mut v = view(
                    &id,
                    52.50 + (i % 40) as f64 * 0.001 + step,
                    13.40 + (i / 40) as f64 * 0.001,
                    i,
                );
                if i % 7 == 0 {
                    v.vehicle_class = Some("comfort".into());
                }
                if i % 11 == 0 {
                    v.vehicle_class = None;
                    v.busy = Some("t1".into());
                }
                v
            })
            .collect();
        let mut one_by_one = MarketIndex::default();
        one_by_one.upsert(view("d000", 52.0, 13.0, -1));
        views.iter().cloned().for_each(|v| one_by_one.upsert(v));
        let mut before = MarketIndex::default();
        before.upsert(view("d000", 52.0, 13.0, -1));
        let mut builder = IndexBuilder::new(before);
        views.iter().cloned().for_each(|v| builder.push(v));
        let at_once = builder.build();
        assert_eq!(at_once.len(), 400);
        assert_eq!(
            cells(&at_once, &at_once.by_cell9),
            cells(&one_by_one, &one_by_one.by_cell9)
        );
        assert_eq!(
            cells(&at_once, &at_once.by_cell7),
            cells(&one_by_one, &one_by_one.by_cell7)
        );
        let last: BTreeMap<&str, &DriverView> = views.iter().map(|v| (v.driver_id.as_str(), v)).collect();
        for (id, v) in last {
            assert_eq!(held(&at_once, id), Some(expected(v)), "{id}");
            assert_eq!(held(&one_by_one, id), Some(expected(v)), "{id}");
        }
    }

    #[test]
    fn excluded_busy_stale_and_other_classes_are_skipped() {
        let mut index = MarketIndex::default();
        index.upsert(view("near", 52.5200, 13.4000, 0));
        let mut busy = view("busy", 52.5201, 13.4001, 0);
        busy.busy = Some("t9".into());
        index.upsert(busy);
        let mut comfort = view("comfort", 52.5202, 13.4000, 0);
        comfort.vehicle_class = Some("comfort".into());
        index.upsert(comfort);
        index.upsert(view("stale", 52.5200, 13.4001, -31_000));
        index.upsert(view("far", 52.5600, 13.4000, 0));
        let availability = Availability {
            at: 0,
            freshness_ms: 30_000,
        };
        let best = |excluded: &dyn Fn(&str) -> bool| {
            index
                .best((52.52, 13.40), "economy", 5.0, &availability, excluded)
                .map(|c| c.driver_id)
        };
        assert_eq!(best(&|_| false).as_deref(), Some("near"));
        assert_eq!(best(&|id| id == "near").as_deref(), Some("far"));
        assert_eq!(index.supply(view("x", 52.52, 13.40, 0).cell7, &availability), 2);
    }

    #[test]
    fn upsert_within_a_cell_replaces_the_view() {
        let mut index = MarketIndex::default();
        index.upsert(view("d", 52.52, 13.40, 0));
        let mut later = view("d", 52.520001, 13.400001, 5_000);
        assert_eq!(later.cell9, held(&index, "d").unwrap().0.cell9, "same cell");
        later.busy = Some("t1".into());
        index.upsert(later.clone());
        assert_eq!(held(&index, "d"), Some(expected(&later)));
        let availability = Availability {
            at: 5_000,
            freshness_ms: 30_000,
        };
        assert!(
            index
                .best((52.52, 13.40), "economy", 1.0, &availability, &|_| false)
                .is_none(),
            "busy now"
        );
        index.upsert(view("d", 52.52, 13.40, 5_000));
        assert_eq!(index.supply(later.cell7, &availability), 1);
        index.remove("d");
        assert!(index.is_empty());
        assert_eq!(index.supply(later.cell7, &availability), 0);
        assert!(
            index.by_cell9.is_empty() && index.by_cell7.is_empty(),
            "no empty cells left"
        );
    }

    #[test]
    fn upsert_moves_a_driver_between_cells() {
        let mut index = MarketIndex::default();
        index.upsert(view("d", 52.52, 13.40, 0));
        index.upsert(view("d", 52.60, 13.50, 0));
        assert_eq!(index.len(), 1);
        let availability = Availability {
            at: 0,
            freshness_ms: 30_000,
        };
        assert!(
            index
                .best((52.52, 13.40), "economy", 1.0, &availability, &|_| false)
                .is_none()
        );
        index.remove("d");
        assert!(index.is_empty());
    }
}
