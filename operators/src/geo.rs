//! Geography: great-circle distances and H3 cells, markets and ring searches.

use h3o::{CellIndex, LatLng, Resolution};

/// Mean earth radius used for every distance (DESIGN.md §4).
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance in km (haversine).
pub fn haversine_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

/// A point as a unit vector from the earth's centre: the straight (chord) distance between two
/// such vectors grows with the great-circle distance between the points (`d = 2R·asin(c/2)`),
/// and costs no trigonometry once the vectors are known.
pub fn unit_vector(lat: f64, lng: f64) -> [f64; 3] {
    let (sin_lat, cos_lat) = lat.to_radians().sin_cos();
    let (sin_lng, cos_lng) = lng.to_radians().sin_cos();
    [cos_lat * cos_lng, cos_lat * sin_lng, sin_lat]
}

/// The squared chord between two unit vectors.
pub fn chord2(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

/// A squared chord beyond which a point is certainly farther than one at squared chord `c2`,
/// by [`haversine_km`] too. The chord of unit vectors is computed to within about 1e-15
/// (components of at most 1, a handful of roundings each); the margin — 1e-12 (6 µm on the
/// earth) plus a relative 1e-9 — keeps a point past it farther than the one at `c2` by more
/// than both computations' rounding, so no tie that [`haversine_km`] would see is missed.
pub fn chord2_beyond(c2: f64) -> f64 {
    let c = c2.sqrt() * (1.0 + 1e-9) + 1e-12;
    c * c
}

pub fn resolution(res: u8) -> Resolution {
    Resolution::try_from(res).unwrap_or(Resolution::Five)
}

/// The cell of a valid position (positions are validated at the edge).
pub fn cell(lat: f64, lng: f64, res: Resolution) -> CellIndex {
    LatLng::new(lat, lng)
        .unwrap_or_else(|_| LatLng::new(0.0, 0.0).expect("origin"))
        .to_cell(res)
}

/// Cell of the driver index (resolution 9).
pub fn cell9(lat: f64, lng: f64) -> CellIndex {
    cell(lat, lng, Resolution::Nine)
}

/// The market (coarse cell) a position belongs to: the ancestor of its resolution-7 cell.
///
/// H3 cells nest only approximately: a point can lie in one coarse cell while its fine cell's
/// parent is the neighbour. Defining a market as a set of resolution-7 cells keeps every
/// surge cell (and everything counted in it) inside exactly one market.
pub fn market_of(lat: f64, lng: f64, market_res: u8) -> CellIndex {
    let fine = cell(lat, lng, Resolution::Seven);
    fine.parent(resolution(market_res)).unwrap_or(fine)
}

/// The markets a driver in a resolution-7 cell must be replicated to: every market with a
/// point within `radius_km` of any point of the cell, the cell's own market first.
///
/// Replicas change only when the driver's resolution-7 cell does, so the set must hold for
/// every position in the cell. It depends on the cell alone, so a step computes it once per
/// cell ([`ReplicaMarkets`]). By the triangle inequality it is enough that a market has a point
/// within `radius_km + margin` of the cell's centre, where the margin is the farthest corner of
/// the cell from its centre (a cell is convex: no point of it lies farther).
///
/// A market is a set of resolution-7 cells (see [`market_of`]); each cell of a disk wide
/// enough for the reach is measured exactly — distance to its polygon — and adds its parent
/// when within reach. The planar measure around the centre errs by well under 1 % at this
/// range, which the `+1 % + 50 m` allowance covers: the set is a superset, as correctness needs
/// (a market ranks drivers by their exact haversine distance), but not the three times larger
/// one a disk alone would give.
pub fn replica_markets(home: CellIndex, radius_km: f64, market_res: u8) -> Vec<CellIndex> {
    let res = resolution(market_res);
    // Markets are sets of resolution-7 cells; a finer market resolution measures its own cells.
    let fine_res = if (res as u8) >= 7 { res } else { Resolution::Seven };
    let home = home.parent(fine_res).unwrap_or(home);
    let own = home.parent(res).unwrap_or(home);
    let centre = LatLng::from(home);
    let (lat, lng) = (centre.lat(), centre.lng());
    let plane = LocalPlane::at(lat, lng);
    let margin = home
        .boundary()
        .iter()
        .map(|v| haversine_km(lat, lng, v.lat(), v.lng()))
        .fold(0.0, f64::max);
    let reach = radius_km + margin;
    let allowed = reach * 1.01 + 0.05;
    let mut markets = vec![own];
    for fine in home.grid_disk::<Vec<_>>(rings_to_cover(fine_res, reach)) {
        let Some(market) = fine.parent(res) else { continue };
        if markets.contains(&market) {
            continue;
        }
        if plane.distance_to_cell_km(fine) <= allowed {
            markets.push(market);
        }
    }
    markets
}

/// [`replica_markets`] remembered per resolution-7 cell: drivers keep to a few cells of a
/// city, and measuring a cell's surroundings costs far more than a ping's other work.
#[derive(Debug, Clone)]
pub struct ReplicaMarkets {
    radius_km: f64,
    market_res: u8,
    known: foldhash::HashMap<u64, Box<[u64]>>,
}

/// Cells remembered before the memory starts afresh (a few MiB; a city has a few thousand).
const REMEMBERED_CELLS: usize = 64 * 1024;

impl ReplicaMarkets {
    pub fn new(radius_km: f64, market_res: u8) -> Self {
        ReplicaMarkets {
            radius_km,
            market_res,
            known: foldhash::HashMap::default(),
        }
    }

    /// The markets of a driver in `cell7` (a resolution-7 cell), own market first.
    pub fn of(&mut self, cell7: u64) -> &[u64] {
        if self.known.len() >= REMEMBERED_CELLS && !self.known.contains_key(&cell7) {
            self.known.clear();
        }
        let (radius_km, market_res) = (self.radius_km, self.market_res);
        self.known
            .entry(cell7)
            .or_insert_with(|| match CellIndex::try_from(cell7) {
                Ok(cell) => replica_markets(cell, radius_km, market_res)
                    .into_iter()
                    .map(u64::from)
                    .collect(),
                Err(_) => Box::default(),
            })
    }
}

/// An equirectangular projection around a point, in km: exact enough within a few tens of km.
struct LocalPlane {
    lat: f64,
    lng: f64,
    cos_lat: f64,
}

impl LocalPlane {
    fn at(lat: f64, lng: f64) -> LocalPlane {
        LocalPlane {
            lat,
            lng,
            cos_lat: lat.to_radians().cos(),
        }
    }

    fn project(&self, lat: f64, lng: f64) -> (f64, f64) {
        let x = (lng - self.lng).to_radians() * self.cos_lat * EARTH_RADIUS_KM;
        let y = (lat - self.lat).to_radians() * EARTH_RADIUS_KM;
        (x, y)
    }

    /// Distance from the plane's origin to the cell's polygon (0 inside it).
    fn distance_to_cell_km(&self, cell: CellIndex) -> f64 {
        let corners: Vec<(f64, f64)> = cell
            .boundary()
            .iter()
            .map(|v| self.project(v.lat(), v.lng()))
            .collect();
        let mut nearest = f64::INFINITY;
        let mut inside = false;
        for (i, &a) in corners.iter().enumerate() {
            let b = corners[(i + 1) % corners.len()];
            nearest = nearest.min(origin_to_segment(a, b));
            // Ray casting along +x from the origin.
            if (a.1 > 0.0) != (b.1 > 0.0) && a.0 + (b.0 - a.0) * (-a.1) / (b.1 - a.1) > 0.0 {
                inside = !inside;
            }
        }
        if inside { 0.0 } else { nearest }
    }
}

fn origin_to_segment(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (a.0 + t * dx).hypot(a.1 + t * dy)
}

/// Rings of cells at `res` around a cell needed to cover every point within `radius_km` of
/// any point of the cell. Conservative: cells at grid distance `k` lie at least
/// `1.2·k·e − 2.4·e` away (e = average edge length; 1.5·k·e for a regular hexagon grid, with
/// 20 % allowance for H3's distortion, minus two circumradii).
pub fn rings_to_cover(res: Resolution, radius_km: f64) -> u32 {
    let e = res.edge_length_km();
    ((radius_km / e + 2.4) / 1.2).ceil() as u32 + 1
}

/// A lower bound of the distance from any point of a cell to any point of a cell `k` rings
/// away (see [`rings_to_cover`]).
pub fn ring_lower_bound_km(res: Resolution, k: u32) -> f64 {
    let e = res.edge_length_km();
    (1.2 * f64::from(k) * e - 2.4 * e).max(0.0)
}

/// The cells exactly `k` rings away.
pub fn ring(center: CellIndex, k: u32) -> Vec<CellIndex> {
    match center.grid_ring_fast(k).collect::<Option<Vec<_>>>() {
        Some(cells) => cells,
        // Near a pentagon: the slow, always correct way.
        None => center
            .grid_disk_distances_safe(k)
            .filter(|(_, d)| *d == k)
            .map(|(c, _)| c)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_a_known_distance() {
        // Berlin Hbf to Alexanderplatz, about 2.6 km.
        let d = haversine_km(52.5251, 13.3694, 52.5219, 13.4132);
        assert!((d - 2.98).abs() < 0.05, "{d}");
        assert_eq!(haversine_km(1.0, 1.0, 1.0, 1.0), 0.0);
    }

    /// Uniform numbers in [0, 1) from a seed (xorshift).
    fn uniform(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A point past [`chord2_beyond`] of another is farther by haversine too, down to the
    /// shortest distances and the closest pairs rounding can make.
    #[test]
    fn a_point_beyond_the_chord_bound_is_farther_by_haversine() {
        let mut next = uniform(0x2545_f491_4f6c_dd1du64);
        let (mut checked, mut close) = (0, 0);
        for _ in 0..20_000 {
            let pickup = (-80.0 + 160.0 * next(), -180.0 + 360.0 * next());
            let scale = [1e-9, 1e-7, 1e-5, 1e-3, 0.05][(next() * 5.0) as usize];
            let a = (
                pickup.0 + scale * (next() - 0.5),
                pickup.1 + scale * (next() - 0.5),
            );
            // b: a itself, a nudged by a few ulps, or a point of its own.
            let b = match (next() * 3.0) as u32 {
                0 => a,
                1 => (a.0 + a.0.abs() * f64::EPSILON * 4.0 * next(), a.1),
                _ => (
                    pickup.0 + scale * (next() - 0.5),
                    pickup.1 + scale * (next() - 0.5),
                ),
            };
            let u = unit_vector(pickup.0, pickup.1);
            let (ca, cb) = (chord2(u, unit_vector(a.0, a.1)), chord2(u, unit_vector(b.0, b.1)));
            let (da, db) = (
                haversine_km(pickup.0, pickup.1, a.0, a.1),
                haversine_km(pickup.0, pickup.1, b.0, b.1),
            );
            assert!(chord2_beyond(ca) >= ca, "the bound widens");
            if cb > chord2_beyond(ca) {
                checked += 1;
                assert!(db > da, "{b:?} beyond {a:?} from {pickup:?}, yet {db} <= {da}");
            } else if db > da {
                close += 1;
            }
            if ca > chord2_beyond(cb) {
                checked += 1;
                assert!(da > db, "{a:?} beyond {b:?} from {pickup:?}, yet {da} <= {db}");
            }
        }
        assert!(checked > 5_000, "the bound excluded points: {checked}");
        assert!(
            close > 100,
            "and kept some farther ones within its margin: {close}"
        );
    }

    /// A point `d` km from (lat, lng) on bearing `b` (radians).
    fn moved(lat: f64, lng: f64, d: f64, b: f64) -> (f64, f64) {
        let dlat = (d / EARTH_RADIUS_KM).to_degrees() * b.cos();
        let dlng = (d / EARTH_RADIUS_KM).to_degrees() * b.sin() / lat.to_radians().cos();
        (lat + dlat, lng + dlng)
    }

    #[test]
    fn replica_markets_cover_every_pickup_in_reach_from_anywhere_in_the_cell() {
        // Drivers anywhere in the resolution-7 cell of the position where replicas were
        // computed; pickups up to the radius from them: their markets must all be listed.
        let radius = 5.0;
        let mut next = uniform(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..300 {
            let (lat, lng) = (52.3 + next() * 0.5, 13.0 + next() * 0.7);
            let home = cell(lat, lng, Resolution::Seven);
            let markets = replica_markets(home, radius, 5);
            assert_eq!(markets[0], market_of(lat, lng, 5));
            let corners: Vec<_> = home.boundary().iter().map(|v| (v.lat(), v.lng())).collect();
            // The driver later: at a corner of the cell (the limit of where it can go without
            // a new cell, and so without new replicas), or where it was.
            for (dlat, dlng) in corners.iter().copied().chain([(lat, lng)]) {
                for bearing in 0..36 {
                    let b = f64::from(bearing * 10).to_radians();
                    let (qlat, qlng) = moved(dlat, dlng, radius * (0.9 + 0.1 * next()), b);
                    let m = market_of(qlat, qlng, 5);
                    assert!(
                        markets.contains(&m),
                        "pickup {qlat},{qlng} within {radius} km of {dlat},{dlng} (cell of {lat},{lng}) is in market {m}, not listed"
                    );
                }
            }
        }
    }

    #[test]
    fn replica_markets_list_no_market_out_of_reach() {
        // Every listed market has a resolution-7 cell within the reach of the driver's cell
        // (radius plus the farthest corner of the cell from its centre, plus the allowance),
        // measured by haversine from the centre over a dense sample of the market's cell
        // boundaries; and a driver deep inside a market is replicated to few markets.
        let radius = 5.0;
        let mut total = 0usize;
        let positions: Vec<(f64, f64)> = (0..20)
            .flat_map(|i| (0..20).map(move |j| (52.3 + f64::from(i) * 0.025, 13.0 + f64::from(j) * 0.035)))
            .collect();
        for &(lat, lng) in &positions {
            let home = cell(lat, lng, Resolution::Seven);
            let markets = replica_markets(home, radius, 5);
            total += markets.len();
            let centre = LatLng::from(home);
            let (clat, clng) = (centre.lat(), centre.lng());
            let margin = home
                .boundary()
                .iter()
                .map(|v| haversine_km(clat, clng, v.lat(), v.lng()))
                .fold(0.0, f64::max);
            let reach = (radius + margin) * 1.02 + 0.1;
            for market in &markets[1..] {
                let near = market
                    .children(Resolution::Seven)
                    .flat_map(|c| {
                        let b: Vec<_> = c.boundary().iter().map(|v| (v.lat(), v.lng())).collect();
                        (0..b.len())
                            .flat_map(move |i| {
                                let (a, z) = (b[i], b[(i + 1) % b.len()]);
                                (0..=10).map(move |s| {
                                    let t = f64::from(s) / 10.0;
                                    (a.0 + (z.0 - a.0) * t, a.1 + (z.1 - a.1) * t)
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                    .map(|(plat, plng)| haversine_km(clat, clng, plat, plng))
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    near <= reach,
                    "market {market} listed for the cell of {lat},{lng}: nearest point {near:.2} km > {reach:.2} km"
                );
            }
        }
        let mean = total as f64 / positions.len() as f64;
        assert!(
            mean < 5.0,
            "a driver is replicated to {mean:.2} markets on average"
        );
    }

    #[test]
    fn remembered_replicas_are_the_cells_own() {
        let mut memo = ReplicaMarkets::new(5.0, 5);
        for &(lat, lng) in &[(52.52, 13.40), (52.40, 13.25), (52.52, 13.4001), (52.61, 13.55)] {
            let home = cell(lat, lng, Resolution::Seven);
            let expected: Vec<u64> = replica_markets(home, 5.0, 5).into_iter().map(u64::from).collect();
            assert_eq!(memo.of(home.into()), expected.as_slice());
            // Asked again (from memory): the same.
            assert_eq!(memo.of(home.into()), expected.as_slice());
        }
        assert_eq!(memo.known.len(), 3, "two of the positions share a cell");
    }

    #[test]
    fn rings_cover_the_radius() {
        let res = Resolution::Nine;
        let k = rings_to_cover(res, 5.0);
        assert!(ring_lower_bound_km(res, k) > 5.0);
        assert_eq!(ring(cell9(52.52, 13.40), 1).len(), 6);
    }
}
