//! The events MediTrack publishes: one envelope, one typed payload per event type, and the
//! topic each type travels on (000 §2, §3.1).

pub mod audit;
pub mod envelope;
pub mod insurance;
pub mod lab;
pub mod patient;
pub mod pharmacy;
pub mod schemas;
pub mod topic;

pub use envelope::{EventEnvelope, EventMeta, EventPayload, topic_of};
pub use topic::Topic;
