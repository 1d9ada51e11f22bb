//! A market's drivers, indexed by H3 cell, and the search for the best available candidate.

use std::collections::BTreeSet;
use std::sync::Arc;

use foldhash::HashMap;

use h3o::{CellIndex, Resolution};

use crate::geo;
use crate::messages::DriverView;

/// What makes a driver available (DESIGN.md §4).
#[derive(Debug, Clone, Copy)]
pub struct Availability {
    /// The decision's event time.
    pub at: i64,
    /// Longest allowed age of the last ping, ms.
    pub freshness_ms: i64,
}

impl Availability {
    /// Online, holding no trip, and pinged at most `freshness` before `at`.
    pub fn admits(&self, view: &DriverView) -> bool {
        view.online && view.busy.is_none() && self.at - view.ping_ts <= self.freshness_ms
    }
}

/// A candidate: a driver and its distance to the pickup.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub driver_id: String,
    pub distance_km: f64,
}

/// The drivers one market can match: its own and those near its borders. A driver's id is
/// held once and shared by the map and both cell sets (a market can hold millions of views).
#[derive(Debug, Default, Clone)]
pub struct MarketIndex {
    drivers: HashMap<Arc<str>, DriverView>,
    by_cell9: HashMap<u64, BTreeSet<Arc<str>>>,
    by_cell7: HashMap<u64, BTreeSet<Arc<str>>>,
}

impl MarketIndex {
    pub fn len(&self) -> usize {
        self.drivers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    pub fn get(&self, driver_id: &str) -> Option<&DriverView> {
        self.drivers.get(driver_id)
    }

    pub fn drivers(&self) -> impl Iterator<Item = &DriverView> {
        self.drivers.values()
    }

    pub fn upsert(&mut self, view: DriverView) {
        // Most pings leave a driver in the cells it was in: only the view changes.
        if let Some(old) = self.drivers.get_mut(view.driver_id.as_str())
            && old.cell9 == view.cell9
            && old.cell7 == view.cell7
        {
            *old = view;
            return;
        }
        self.remove(&view.driver_id);
        let id: Arc<str> = Arc::from(view.driver_id.as_str());
        self.by_cell9.entry(view.cell9).or_default().insert(id.clone());
        self.by_cell7.entry(view.cell7).or_default().insert(id.clone());
        self.drivers.insert(id, view);
    }

    /// Upserts many views, with room made for all of them at once: building an index of a
    /// million drivers one upsert at a time grows (and copies) its table twenty times over.
    pub fn extend(&mut self, views: impl ExactSizeIterator<Item = DriverView>) {
        self.drivers.reserve(views.len());
        for view in views {
            self.upsert(view);
        }
    }

    pub fn remove(&mut self, driver_id: &str) {
        if let Some(old) = self.drivers.remove(driver_id) {
            for (index, cell) in [(&mut self.by_cell9, old.cell9), (&mut self.by_cell7, old.cell7)] {
                if let Some(set) = index.get_mut(&cell) {
                    set.remove(driver_id);
                    if set.is_empty() {
                        index.remove(&cell);
                    }
                }
            }
        }
    }

    /// Available drivers whose last ping lies in the resolution-7 cell (surge supply).
    pub fn supply(&self, cell7: u64, availability: &Availability) -> usize {
        self.by_cell7.get(&cell7).map_or(0, |ids| {
            ids.iter()
                .filter(|id| self.drivers.get(*id).is_some_and(|v| availability.admits(v)))
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
    /// (haversine distance, driver id) over all drivers in reach.
    pub fn best(
        &self,
        pickup: (f64, f64),
        class: &str,
        radius_km: f64,
        availability: &Availability,
        excluded: &dyn Fn(&str) -> bool,
    ) -> Option<Candidate> {
        let center: CellIndex = geo::cell9(pickup.0, pickup.1);
        let last_ring = geo::rings_to_cover(Resolution::Nine, radius_km);
        let mut best: Option<Candidate> = None;
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
                let Some(ids) = self.by_cell9.get(&u64::from(cell)) else {
                    continue;
                };
                for id in ids {
                    let id: &str = id;
                    let view = &self.drivers[id];
                    if view.vehicle_class.as_deref() != Some(class)
                        || !availability.admits(view)
                        || excluded(id)
                    {
                        continue;
                    }
                    let d = geo::haversine_km(pickup.0, pickup.1, view.lat, view.lng);
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
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn brute_force(
        index: &MarketIndex,
        pickup: (f64, f64),
        availability: &Availability,
    ) -> Option<Candidate> {
        index
            .drivers()
            .filter(|v| availability.admits(v) && v.vehicle_class.as_deref() == Some("economy"))
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
            for i in 0..rng.gen_range(0..60) {
                let lat = 52.52 + rng.gen_range(-0.08..0.08);
                let lng = 13.40 + rng.gen_range(-0.12..0.12);
                index.upsert(view(&format!("d{i:03}"), lat, lng, rng.gen_range(-40_000..1_000)));
            }
            // Later pings: some stay in their cells, some move, some go stale or busy.
            for _ in 0..rng.gen_range(0..60) {
                let id = format!("d{:03}", rng.gen_range(0..60));
                let Some(mut v) = index.get(&id).cloned() else {
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
                index.upsert(v);
            }
            let pickup = (
                52.52 + rng.gen_range(-0.05..0.05),
                13.40 + rng.gen_range(-0.05..0.05),
            );
            let found = index.best(pickup, "economy", 5.0, &availability, &|_| false);
            assert_eq!(found, brute_force(&index, pickup, &availability), "round {round}");
        }
    }

    /// An index built from many views at once is the one their upserts build, repeats and
    /// moves included.
    #[test]
    fn extend_builds_what_upserts_build() {
        let views: Vec<DriverView> = (0..500)
            .map(|i| {
                let id = format!("d{:03}", i % 400);
                let step = if i < 400 { 0.0 } else { 0.03 };
                view(
                    &id,
                    52.50 + (i % 40) as f64 * 0.001 + step,
                    13.40 + (i / 40) as f64 * 0.001,
                    i,
                )
            })
            .collect();
        let mut one_by_one = MarketIndex::default();
        views.iter().cloned().for_each(|v| one_by_one.upsert(v));
        let mut at_once = MarketIndex::default();
        at_once.upsert(view("d000", 52.0, 13.0, -1));
        at_once.extend(views.into_iter());
        assert_eq!(at_once.len(), 400);
        assert_eq!(at_once.by_cell9, one_by_one.by_cell9);
        assert_eq!(at_once.by_cell7, one_by_one.by_cell7);
        for v in one_by_one.drivers() {
            assert_eq!(at_once.get(&v.driver_id), Some(v));
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
        assert_eq!(later.cell9, index.get("d").unwrap().cell9, "same cell");
        later.busy = Some("t1".into());
        index.upsert(later.clone());
        assert_eq!(index.get("d"), Some(&later));
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
