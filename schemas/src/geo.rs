use serde::{Deserialize, Serialize};

use crate::{SchemaError, Validate, validate};

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lng: f64,
}

impl Validate for GeoPoint {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::latitude("lat", self.lat)?;
        validate::longitude("lng", self.lng)
    }
}
