//! The shared vocabulary of MediTrack. Everything here is pure: no I/O, no HTTP, no SQL.

pub mod audit;
pub mod clock;
pub mod codes;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod lab_request;
pub mod paging;
pub mod person;
pub mod principal;
pub mod role;
pub mod sensitive;
pub mod tenant;
pub mod text;

pub use clock::{Clock, SystemClock};
pub use error::{ErrorKind, FieldError, FieldErrors, OperationError};
pub use principal::Principal;
pub use role::Role;
pub use sensitive::Sensitive;
pub use tenant::TenantId;
