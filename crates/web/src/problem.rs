//! RFC 9457 problem details: the one way any HTTP error leaves MediTrack.
//!
//! Every problem has a stable `code` (clients match on it), a human `detail` (no PHI), the
//! per-field `errors` when input was rejected, and the `requestId` to quote to support.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kernel::{ErrorKind, FieldError, OperationError};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Problem {
    pub title: &'static str,
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub request_id: Option<String>,
    /// Extension members (RFC 9457 §3.2), e.g. OAuth's `error` on the token endpoint.
    /// Boxed: they are rare, and every `Result<_, Problem>` pays for the size of a Problem.
    pub members: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

/// The wire form; `type` is derived from the code, so it need not be carried around.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'static str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            title: status.canonical_reason().unwrap_or("Error"),
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            request_id: None,
            members: None,
        }
    }

    pub fn with_member(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.members
            .get_or_insert_default()
            .insert(name.to_owned(), value.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// A 422 listing what is wrong with each field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.len() {
            1 => "1 field is invalid".to_owned(),
            n => format!("{n} fields are invalid"),
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation.failed",
            detail,
        )
        .with_errors(errors)
    }

    pub fn not_found(code: &'static str, what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
    }

    /// The answer to a failure that is ours: details go to the log under the request id,
    /// the caller gets only the id.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; quote the request id when reporting it",
        )
    }

    pub fn from_operation<E: OperationError>(e: &E) -> Self {
        let status = status_of(e.kind());
        match e.kind() {
            ErrorKind::Internal => {
                tracing::error!(code = e.code(), error = %e, "operation failed");
                Self::internal()
            }
            ErrorKind::Unavailable => {
                tracing::warn!(code = e.code(), error = %e, "dependency unavailable");
                Self::new(
                    status,
                    e.code(),
                    "a dependency is unavailable; try again shortly",
                )
            }
            _ => Self::new(status, e.code(), e.to_string()).with_errors(e.field_errors().to_vec()),
        }
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Problem {
    /// The JSON body, as RFC 9457 spells it.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(Body {
            type_uri: format!("https://meditrack.dev/problems/{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            errors: &self.errors,
            request_id: self.request_id.as_deref(),
        })
        .unwrap_or_default();
        if let Some(object) = body.as_object_mut() {
            for (name, value) in self.members.iter().flat_map(|m| m.iter()) {
                object.entry(name).or_insert_with(|| value.clone());
            }
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if self.request_id.is_none() {
            self.request_id = crate::request::current_request_id();
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: say which scheme is wanted, and whether the token sent was bad.
            let challenge = match self.code {
                "auth.token_missing" => "Bearer realm=\"meditrack\"",
                _ => "Bearer realm=\"meditrack\", error=\"invalid_token\"",
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the oversized body is never read, so this connection cannot carry
            // another request; saying so stops clients from reusing it and failing.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("patient not found")]
    struct Missing;

    impl OperationError for Missing {
        fn code(&self) -> &'static str {
            "patient.not_found"
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::NotFound
        }
    }

    #[test]
    fn operation_errors_keep_their_code_and_map_their_kind() {
        let p = Problem::from_operation(&Missing);
        assert_eq!(p.status, StatusCode::NOT_FOUND);
        assert_eq!(p.code, "patient.not_found");
        let json = p.body();
        assert_eq!(json["status"], 404);
        assert_eq!(
            json["type"],
            "https://meditrack.dev/problems/patient.not_found"
        );
        assert!(json.get("errors").is_none());
    }
}
