//! Typed ids. All ids are UUID v7: unique without coordination and roughly ordered by time,
//! which keeps B-tree inserts local.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an id: ids are UUIDs in their hyphenated form")]
pub struct InvalidId;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Only the canonical hyphenated form: one id, one spelling.
                if s.len() != 36 {
                    return Err(InvalidId);
                }
                Uuid::try_parse(s).map(Self).map_err(|_| InvalidId)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

uuid_id!(
    /// A patient, as the patient service knows it.
    PatientId
);
uuid_id!(MedicalRecordId);
uuid_id!(LabOrderId);
uuid_id!(TimelineEntryId);
uuid_id!(EventId);
uuid_id!(
    /// Ties together everything done on behalf of one request.
    CorrelationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_their_canonical_form() {
        let id = PatientId::new();
        assert_eq!(id.to_string().parse::<PatientId>().ok(), Some(id));
        assert!("not-an-id".parse::<PatientId>().is_err());
        let simple = id.as_uuid().simple().to_string();
        assert!(simple.parse::<PatientId>().is_err());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = PatientId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = PatientId::new();
        assert!(a < b);
    }
}
