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

/// Every market with any point within `radius_km` of the position, its own first.
///
/// Found through the resolution-7 cells around the position: a disk wide enough to hold every
/// point within the radius (with margin for H3's distortion), mapped to their parents. The set
/// may hold a market slightly farther than the radius — a superset is what correctness needs:
/// a market only ever ranks drivers by their exact haversine distance.
pub fn markets_within(lat: f64, lng: f64, radius_km: f64, market_res: u8) -> Vec<CellIndex> {
    let res = resolution(market_res);
    let fine = if (res as u8) >= 7 { res } else { Resolution::Seven };
    let center = cell(lat, lng, fine);
    let own = center.parent(res).unwrap_or(center);
    let k = rings_to_cover(fine, radius_km);
    let mut markets: Vec<CellIndex> = center
        .grid_disk::<Vec<_>>(k)
        .into_iter()
        .filter_map(|c| c.parent(res))
        .collect();
    markets.sort_unstable();
    markets.dedup();
    markets.retain(|m| *m != own);
    markets.insert(0, own);
    markets
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

    #[test]
    fn markets_within_cover_every_point_in_reach() {
        // Points around a position, 5 km in every direction: their markets must be listed.
        let (lat, lng) = (52.52, 13.40);
        let markets = markets_within(lat, lng, 5.0, 5);
        assert_eq!(markets[0], market_of(lat, lng, 5));
        for bearing in 0..72 {
            let b = f64::from(bearing * 5).to_radians();
            for step in 1..=10 {
                let d = 5.0 * f64::from(step) / 10.0;
                let dlat = (d / EARTH_RADIUS_KM).to_degrees() * b.cos();
                let dlng = (d / EARTH_RADIUS_KM).to_degrees() * b.sin() / lat.to_radians().cos();
                let m = market_of(lat + dlat, lng + dlng, 5);
                assert!(markets.contains(&m), "bearing {bearing} step {step}");
            }
        }
    }

    #[test]
    fn rings_cover_the_radius() {
        let res = Resolution::Nine;
        let k = rings_to_cover(res, 5.0);
        assert!(ring_lower_bound_km(res, k) > 5.0);
        assert_eq!(ring(cell9(52.52, 13.40), 1).len(), 6);
    }
}
