//! Decoding input topics into schema types, with errors that name the field.

use fleetstream_schemas::{SchemaError, Validate};
use fleetstream_topology::DecodeError;
use serde::de::DeserializeOwned;

/// Decodes and validates a JSON record of a schema type.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    fleetstream_schemas::decode(bytes).map_err(schema_error)
}

pub fn schema_error(e: SchemaError) -> DecodeError {
    DecodeError::new(e.field(), e.message())
}
