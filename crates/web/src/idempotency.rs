//! `Idempotency-Key`: a client that retries a POST with the same key gets the outcome of the
//! first attempt instead of a second effect. The key is bound to a digest of the request
//! (method, path and body), so reusing a key for a different request is an error.

use crate::Problem;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

pub const HEADER: &str = "idempotency-key";
/// Set on a response that repeats the outcome of an earlier request with the same key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

pub use kernel::idempotency::IdempotencyKey;

/// The key of a request, `None` when the header is absent. Keys are 1 to 255 printable
/// ASCII characters.
pub fn from_request(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, Problem> {
    {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "request.invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 printable ASCII characters, such as a UUID",
                )
            })?;
        let mut digest = Sha256::new();
        for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
            digest.update(part);
        }
        Ok(Some(IdempotencyKey {
            key: key.to_owned(),
            request_digest: format!("{:x}", digest.finalize()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key(value: &'static str, body: &[u8]) -> Result<Option<IdempotencyKey>, StatusCode> {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static(value));
        from_request(&h, "POST", "/p", body).map_err(|p| p.status)
    }

    #[test]
    fn the_digest_binds_the_key_to_the_request() {
        let a = key("k-1", b"{}").unwrap().unwrap();
        let b = key("k-1", b"{ }").unwrap().unwrap();
        assert_eq!(a.key, "k-1");
        assert_eq!(a.request_digest.len(), 64);
        assert_ne!(a.request_digest, b.request_digest);
        assert_eq!(key("k-1", b"{}").unwrap().unwrap(), a);
    }

    #[test]
    fn keys_are_short_and_printable() {
        assert_eq!(key("has space", b"").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(
            from_request(&HeaderMap::new(), "POST", "/", b"").ok(),
            Some(None)
        );
    }
}
