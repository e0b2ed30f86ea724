//! Strict JSON request bodies: wrong content type → 415, too large → 413, not JSON → 400,
//! JSON of the wrong shape (unknown field, wrong type, missing field) → 422 naming the field.
//!
//! Messages are rewritten so that they never quote the rejected value back: a value sent
//! in the wrong field may be PHI, and problems may end up in client logs.

use crate::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use kernel::FieldError;
use kernel::idempotency::IdempotencyKey;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        require_json(request.headers())?;
        let Body(bytes) = Body::from_request(request, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// The raw body, within the configured size limit, for handlers that need the bytes
/// (an optional body, or a digest for idempotency). Rejections are problems too.
#[derive(Debug, Clone)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request.body_too_large",
                        "the body is larger than this server accepts",
                    )
                } else {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "request.unreadable_body",
                        "the body could not be read",
                    )
                }
            })
    }
}

/// A JSON command: the body, and the `Idempotency-Key` bound to this exact request.
#[derive(Debug, Clone)]
pub struct JsonCommand<T> {
    pub body: T,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl<S, T> FromRequest<S> for JsonCommand<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        require_json(request.headers())?;
        let (method, path, headers) = (
            request.method().clone(),
            request.uri().path().to_owned(),
            request.headers().clone(),
        );
        let Body(bytes) = Body::from_request(request, state).await?;
        let idempotency_key =
            crate::idempotency::from_request(&headers, method.as_str(), &path, &bytes)?;
        Ok(Self {
            body: parse(&bytes)?,
            idempotency_key,
        })
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    if is_json(headers.get(header::CONTENT_TYPE)) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        ))
    }
}

/// For handlers whose body is optional: checks the content type, then parses.
pub fn parse_with_type<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Problem> {
    require_json(headers)?;
    parse(body)
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                Problem::validation(vec![field_error(&path, &inner)])
            }
            _ => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.malformed_json",
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            ),
        }
    })?;
    // Trailing garbage after the value is malformed JSON too.
    deserializer.end().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "request.malformed_json",
            "the body has data after the JSON value",
        )
    })?;
    Ok(value)
}

fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let text = error.to_string();
    let message = text
        .rfind(" at line ")
        .map_or(text.as_str(), |i| &text[..i]);
    let path = if path == "." { "" } else { path };
    if message.starts_with("unknown field") {
        return FieldError::new(path, "unknown_field", "is not a field of this resource");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let field = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return FieldError::new(field, "required", "is required");
    }
    if let Some(i) = message.rfind(", expected ") {
        let expected = &message[i + ", expected ".len()..];
        let code = if message.starts_with("unknown variant") {
            "invalid_value"
        } else {
            "invalid_type"
        };
        return FieldError::new(path, code, format!("expected {expected}"));
    }
    FieldError::new(path, "invalid", "has an invalid value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        first_name: String,
        #[serde(default)]
        addresses: Vec<Address>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Address {
        zip_code: String,
    }

    fn rejection(body: &str) -> Problem {
        parse::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        let p = rejection("{\"firstName\": ");
        assert_eq!(
            (p.status, p.code),
            (StatusCode::BAD_REQUEST, "request.malformed_json")
        );
        let p = rejection("{\"firstName\": \"a\"} x");
        assert_eq!(p.code, "request.malformed_json");
    }

    #[test]
    fn unknown_nested_fields_are_named_by_path() {
        let p = rejection(r#"{"firstName": "a", "addresses": [{"zipCode": "1", "planet": "x"}]}"#);
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.errors[0].field, "addresses[0].planet");
        assert_eq!(p.errors[0].code, "unknown_field");
    }

    #[test]
    fn wrong_types_do_not_echo_the_value() {
        let p = rejection(r#"{"firstName": 123456789}"#);
        assert_eq!(p.errors[0].field, "firstName");
        assert_eq!(p.errors[0].code, "invalid_type");
        assert!(
            !p.errors[0].message.contains("123456789"),
            "{}",
            p.errors[0].message
        );
    }

    #[test]
    fn missing_fields_are_required() {
        let p = rejection(r#"{"addresses": []}"#);
        assert_eq!(p.errors[0].field, "firstName");
        assert_eq!(p.errors[0].code, "required");
    }

    #[test]
    fn json_media_types_are_recognised() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/fhir+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
