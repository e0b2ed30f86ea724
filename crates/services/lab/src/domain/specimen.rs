//! Specimens taken for an order: collected (by whom, when), received by the lab, and in
//! what condition they arrived.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// 000 §4.1 `specimen_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecimenType {
    Blood,
    Urine,
    Tissue,
    Swab,
    Other,
}

impl SpecimenType {
    pub const ALL: [SpecimenType; 5] = [
        SpecimenType::Blood,
        SpecimenType::Urine,
        SpecimenType::Tissue,
        SpecimenType::Swab,
        SpecimenType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpecimenType::Blood => "BLOOD",
            SpecimenType::Urine => "URINE",
            SpecimenType::Tissue => "TISSUE",
            SpecimenType::Swab => "SWAB",
            SpecimenType::Other => "OTHER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Specimen {
    pub id: Uuid,
    pub specimen_type: SpecimenType,
    pub collected_at: DateTime<Utc>,
    pub collected_by: String,
    pub received_at: Option<DateTime<Utc>>,
    /// As the receiving lab describes it (`ACCEPTABLE`, `HEMOLYZED`, `CLOTTED`, …).
    pub condition: Option<String>,
}
