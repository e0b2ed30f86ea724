//! ETags are a resource's version: `"3"`. `If-Match` takes one such tag (weak form
//! accepted) or `*`.

use crate::Problem;
use axum::http::{HeaderMap, StatusCode, header};

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// `None`: no header. `Some(None)`: `*`, any version. `Some(Some(v))`: version `v`.
/// A tag that is not one of our versions cannot match, so it is a failed precondition.
/// `mismatch` is the resource's own code for a version that does not match.
pub fn if_match(
    headers: &HeaderMap,
    mismatch: &'static str,
) -> Result<Option<Option<i64>>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "request.invalid_if_match",
            "If-Match must be one ETag such as \"3\", or *",
        )
    };
    let value = value.to_str().map_err(|_| bad())?.trim();
    if value == "*" {
        return Ok(Some(None));
    }
    if value.contains(',') {
        return Err(bad());
    }
    let tag = value.strip_prefix("W/").unwrap_or(value);
    let inner = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(bad)?;
    match inner.parse::<i64>() {
        Ok(v) => Ok(Some(Some(v))),
        Err(_) => Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            mismatch,
            "the ETag in If-Match is not a version of this resource",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn parse(v: &'static str) -> Result<Option<Option<i64>>, StatusCode> {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static(v));
        if_match(&h, "x.version_mismatch").map_err(|p| p.status)
    }

    #[test]
    fn if_match_takes_one_tag_or_a_star() {
        assert_eq!(parse("\"3\""), Ok(Some(Some(3))));
        assert_eq!(parse("W/\"3\""), Ok(Some(Some(3))));
        assert_eq!(parse("*"), Ok(Some(None)));
        assert_eq!(parse("3"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("\"1\", \"2\""), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("\"abc\""), Err(StatusCode::PRECONDITION_FAILED));
        assert_eq!(
            if_match(&HeaderMap::new(), "x.version_mismatch").ok(),
            Some(None)
        );
    }
}
