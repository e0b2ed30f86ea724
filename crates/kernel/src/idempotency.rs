/// A client's `Idempotency-Key` and the digest of the request it came with: a retry with
/// the same key and digest gets the first outcome; the same key with another digest is a
/// misuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// Hex SHA-256 of the request (method, path, body).
    pub request_digest: String,
}
