//! Who is calling. Until authentication lands (issue 5), every request acts for the
//! configured default tenant, or for the tenant named in `X-Tenant-Id`.

use crate::Problem;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use kernel::{Principal, TenantId};

pub const TENANT_HEADER: &str = "x-tenant-id";

/// Installed as a request extension by the composition root.
#[derive(Debug, Clone)]
pub struct DefaultTenant(pub TenantId);

#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let tenant = match parts.headers.get(TENANT_HEADER) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|s| TenantId::parse(s).ok())
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "request.invalid_tenant",
                        "X-Tenant-Id must be 1 to 50 letters, digits, '-' or '_'",
                    )
                })?,
            None => parts
                .extensions
                .get::<DefaultTenant>()
                .map(|d| d.0.clone())
                .ok_or_else(Problem::internal)?,
        };
        Ok(Caller(Principal::anonymous(tenant)))
    }
}
