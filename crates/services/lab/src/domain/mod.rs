//! The lab domain, close to FHIR so that the FHIR reads map directly: a [`LabOrder`]
//! (ServiceRequest) holds [`LabTest`]s, each with its [`ResultRevision`]s (Observation, and
//! their history), the [`Specimen`]s taken for it (Specimen); a completed order's verified
//! results are its report (DiagnosticReport). No SQL, no HTTP.

pub mod critical;
pub mod order;
pub mod result;
pub mod specimen;

pub use critical::CriticalLimits;
pub use order::{LabOrder, LabTest, NewLabOrder, OrderStatus, Priority, TestStatus, Transition};
pub use result::{AbnormalFlag, ResultRevision, SubmittedResult};
pub use specimen::{Specimen, SpecimenType};
