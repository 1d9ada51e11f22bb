use thiserror::Error;

/// Why a record could not be accepted. Always the caller's error (bad input): retrying the same
/// bytes cannot help. `field` names the offending field as a dotted path (`pickup.lat`), or `$`
/// when the record as a whole is wrong (not JSON, not an object).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// The bytes are not JSON, or a field has the wrong JSON type, is missing or unknown.
    #[error("{field}: {message}")]
    Malformed { field: String, message: String },
    /// The JSON is well formed but a value breaks a rule (range, sign, format).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl SchemaError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaError::Malformed {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The offending field as a dotted path, `$` for the whole record.
    pub fn field(&self) -> &str {
        match self {
            SchemaError::Malformed { field, .. } | SchemaError::Invalid { field, .. } => field,
        }
    }

    /// The human-readable reason, without the field.
    pub fn message(&self) -> &str {
        match self {
            SchemaError::Malformed { message, .. } | SchemaError::Invalid { message, .. } => message,
        }
    }

    /// Prefixes the field path, for errors found inside a nested value.
    pub fn within(self, parent: &str) -> Self {
        let join = |field: String| {
            if field == "$" {
                parent.to_string()
            } else {
                format!("{parent}.{field}")
            }
        };
        match self {
            SchemaError::Malformed { field, message } => SchemaError::Malformed {
                field: join(field),
                message,
            },
            SchemaError::Invalid { field, message } => SchemaError::Invalid {
                field: join(field),
                message,
            },
        }
    }
}
