//! The patient domain: value objects parsed at the edge, the patient aggregate, medical
//! records, lab order requests and the timeline. No SQL, no HTTP.
//!
//! Every parser returns `Result<T, FieldError>` with the field left empty; the caller
//! roots it (`FieldErrors::take("addresses[0].zipCode", …)`).

pub mod address;
pub mod contact;
pub mod identifiers;
pub mod insurance;
pub mod lab_order;
pub mod medical_record;
pub mod name;
pub mod patient;
pub mod timeline;

pub use kernel::{codes, text};

pub use address::Address;
pub use contact::{Email, Gender, Phone};
pub use identifiers::{DateOfBirth, Mrn, Ssn};
pub use insurance::Insurance;
pub use name::PersonName;
pub use patient::{Demographics, Patient};
