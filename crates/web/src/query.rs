//! Strict query strings: an unknown or repeated parameter is an error, because a typo such
//! as `lastname=` silently widening a patient search to everyone is worse than a 400.

use crate::Problem;
use axum::extract::{FromRequestParts, RawQuery};
use axum::http::StatusCode;
use axum::http::request::Parts;

#[derive(Debug, Clone, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.invalid_query",
                    "the query string could not be read",
                )
            })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
            .map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.invalid_query",
                    "the query string is not valid",
                )
            })?;
        Ok(Self(pairs))
    }
}

impl QueryParams {
    /// Rejects parameters outside `allowed`, and any parameter given twice.
    pub fn only(self, allowed: &[&str]) -> Result<Self, Problem> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.unknown_parameter",
                    format!(
                        "unknown query parameter '{}'; allowed: {}",
                        printable(name),
                        allowed.join(", ")
                    ),
                ));
            }
            if self.0[..i].iter().any(|(n, _)| n == name) {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.repeated_parameter",
                    format!("query parameter '{name}' is given more than once"),
                ));
            }
        }
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parameter names are echoed back, values never; names are cut short and cleaned anyway.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}
