//! The laboratory service (000 §2.1.2): lab orders with their tests and diagnoses,
//! specimens, results and their verification, critical results.

pub mod domain;

pub const SERVICE: &str = "lab";
