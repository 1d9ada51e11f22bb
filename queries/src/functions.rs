//! Built-in SQL functions for the domain:
//!
//! - `h3_cell(lat, lng, resolution)`: the H3 cell (hexadecimal, as in the `cell` columns)
//!   containing a point, for per-hexagon aggregates (`GROUP BY h3_cell(lat, lng, 7)`);
//! - `haversine_km(lat1, lng1, lat2, lng2)`: great-circle distance, as matching computes it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use h3o::{LatLng, Resolution};

/// Every built-in function.
pub fn builtins() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(H3Cell::new()),
        ScalarUDF::new_from_impl(HaversineKm::new()),
    ]
}

fn coerce(name: &str, args: &[DataType], want: &[DataType]) -> Result<Vec<DataType>> {
    if args.len() != want.len() {
        return Err(DataFusionError::Plan(format!(
            "{name} takes {} arguments, got {}",
            want.len(),
            args.len()
        )));
    }
    for (i, t) in args.iter().enumerate() {
        if !(t.is_numeric() || t.is_null()) {
            return Err(DataFusionError::Plan(format!(
                "{name}: argument {} must be a number, not {t}",
                i + 1
            )));
        }
    }
    Ok(want.to_vec())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct H3Cell {
    signature: Signature,
}

impl H3Cell {
    pub fn new() -> Self {
        H3Cell {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for H3Cell {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for H3Cell {
    fn name(&self) -> &str {
        "h3_cell"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        coerce(
            self.name(),
            args,
            &[DataType::Float64, DataType::Float64, DataType::Int64],
        )
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (lat, lng, res) = (
            arrays[0].as_primitive::<Float64Type>(),
            arrays[1].as_primitive::<Float64Type>(),
            arrays[2].as_primitive::<Int64Type>(),
        );
        let mut out = Vec::with_capacity(lat.len());
        for i in 0..lat.len() {
            if lat.is_null(i) || lng.is_null(i) || res.is_null(i) {
                out.push(None);
                continue;
            }
            let resolution = u8::try_from(res.value(i))
                .ok()
                .and_then(|r| Resolution::try_from(r).ok())
                .ok_or_else(|| {
                    DataFusionError::Execution(format!("h3_cell: resolution {} is not 0..=15", res.value(i)))
                })?;
            let point = LatLng::new(lat.value(i), lng.value(i)).map_err(|e| {
                DataFusionError::Execution(format!(
                    "h3_cell: ({}, {}) is not a coordinate: {e}",
                    lat.value(i),
                    lng.value(i)
                ))
            })?;
            out.push(Some(point.to_cell(resolution).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out)) as ArrayRef))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HaversineKm {
    signature: Signature,
}

impl HaversineKm {
    pub fn new() -> Self {
        HaversineKm {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for HaversineKm {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for HaversineKm {
    fn name(&self) -> &str {
        "haversine_km"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        coerce(self.name(), args, &[const { DataType::Float64 }; 4])
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let a: Vec<&Float64Array> = arrays.iter().map(|a| a.as_primitive::<Float64Type>()).collect();
        let out: Float64Array = (0..a[0].len())
            .map(|i| {
                if a.iter().any(|x| x.is_null(i)) {
                    None
                } else {
                    Some(fleetstream_operators::geo::haversine_km(
                        a[0].value(i),
                        a[1].value(i),
                        a[2].value(i),
                        a[3].value(i),
                    ))
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
