//! How an operation says what went wrong, independent of the transport that reports it.
//!
//! Each operation has its own error enum; each variant has a stable dotted `code` that
//! clients may match on, and an `ErrorKind` that transports map to their own vocabulary
//! (HTTP status, HL7 ACK code, ...). `Display` texts must never contain PHI.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or breaks a rule.
    Invalid,
    NotFound,
    /// The request conflicts with current state (duplicate key, ...).
    Conflict,
    /// A precondition on the current version did not hold.
    PreconditionFailed,
    /// A precondition the caller must send was missing.
    PreconditionRequired,
    Forbidden,
    Unauthorized,
    Unavailable,
    Internal,
}

/// One problem with one input field. `field` is a JSON path such as `addresses[0].zipCode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// The same error, reported under `prefix` (`addresses[0]` + `zipCode`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if prefix.is_empty() {
            self.field
        } else if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// What every operation error offers to the transports.
pub trait OperationError: std::error::Error + Send + Sync + 'static {
    fn code(&self) -> &'static str;
    fn kind(&self) -> ErrorKind;
    fn field_errors(&self) -> &[FieldError] {
        &[]
    }
}

/// Implements `OperationError` from a table of `variant => (code, kind)`.
#[macro_export]
macro_rules! operation_error {
    ($ty:ident { $($variant:ident $( ( $($p:tt)* ) )? $( { $($f:tt)* } )? => ($code:literal, $kind:ident)),+ $(,)? }) => {
        impl $crate::OperationError for $ty {
            fn code(&self) -> &'static str {
                match self {
                    $($ty::$variant $( ( $($p)* ) )? $( { $($f)* } )? => $code),+
                }
            }
            fn kind(&self) -> $crate::ErrorKind {
                match self {
                    $($ty::$variant $( ( $($p)* ) )? $( { $($f)* } )? => $crate::ErrorKind::$kind),+
                }
            }
        }
    };
}

/// Collects field errors while a whole input is checked, so that a caller learns about
/// every problem at once instead of one per round trip.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Keeps the parsed value, or records its error (re-rooted under `field`) and yields `None`.
    pub fn take<T>(&mut self, field: &str, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e.within(field));
                None
            }
        }
    }

    pub fn extend(&mut self, field: &str, errors: Vec<FieldError>) {
        self.0.extend(errors.into_iter().map(|e| e.within(field)));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// `Ok(value)` when nothing was recorded, the errors otherwise.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            // Every part parsed, so every `Option` the caller holds is `Some`.
            value().ok_or_else(Vec::new)
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_field_errors_get_json_paths() {
        let e = FieldError::new("zipCode", "x", "y").within("addresses[0]");
        assert_eq!(e.field, "addresses[0].zipCode");
        let e = FieldError::new("[2]", "x", "y").within("diagnosisCodes");
        assert_eq!(e.field, "diagnosisCodes[2]");
        let e = FieldError::new("", "x", "y").within("email");
        assert_eq!(e.field, "email");
    }
}
