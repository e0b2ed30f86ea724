//! HTTP plumbing shared by every service: problem+json errors, request ids and request
//! logs, the authenticated caller, Prometheus metrics, strict JSON extraction, paging
//! parameters and health checks.

pub mod caller;
pub mod client_ip;
pub mod edge;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod limit;
pub mod metrics;
pub mod paging;
pub mod preconditions;
pub mod problem;
pub mod query;
pub mod request;
pub mod tls;

pub use caller::{Authenticator, Caller};
pub use idempotency::IdempotencyKey;
pub use json::{ApiJson, Body, JsonCommand};
pub use paging::{PageBody, page_request, paging_only};
pub use problem::Problem;
pub use query::QueryParams;
