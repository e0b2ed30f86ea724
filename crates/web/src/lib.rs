//! HTTP plumbing shared by every service: problem+json errors, request ids and request
//! logs, Prometheus metrics, strict JSON extraction, paging parameters and health checks.

pub mod caller;
pub mod health;
pub mod json;
pub mod metrics;
pub mod paging;
pub mod problem;
pub mod query;
pub mod request;

pub use caller::{Caller, DefaultTenant};
pub use json::ApiJson;
pub use paging::{PageBody, page_request};
pub use problem::Problem;
pub use query::QueryParams;
