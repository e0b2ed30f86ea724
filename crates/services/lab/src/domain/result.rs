//! Results: each submission of a value for a test is a revision, kept forever. A revision
//! is final once a supervisor verified it; one submitted after a verified one is a
//! correction, and is final in turn only once verified.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// 000 §4.1 `abnormal_flag`, as HL7 table 0078 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbnormalFlag {
    Low,
    High,
    CriticalLow,
    CriticalHigh,
    Normal,
    Abnormal,
}

impl AbnormalFlag {
    pub const ALL: [AbnormalFlag; 6] = [
        AbnormalFlag::Low,
        AbnormalFlag::High,
        AbnormalFlag::CriticalLow,
        AbnormalFlag::CriticalHigh,
        AbnormalFlag::Normal,
        AbnormalFlag::Abnormal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AbnormalFlag::Low => "L",
            AbnormalFlag::High => "H",
            AbnormalFlag::CriticalLow => "LL",
            AbnormalFlag::CriticalHigh => "HH",
            AbnormalFlag::Normal => "N",
            AbnormalFlag::Abnormal => "A",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s.trim())
    }

    /// Outside the reference range, critically or not.
    pub fn is_abnormal(self) -> bool {
        self != AbnormalFlag::Normal
    }

    pub fn is_critical(self) -> bool {
        matches!(self, AbnormalFlag::CriticalLow | AbnormalFlag::CriticalHigh)
    }
}

/// A value reported for a test.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmittedResult {
    /// The test, by its code in the order.
    pub test_code: String,
    pub value: String,
    pub unit: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flag: Option<AbnormalFlag>,
    pub performed_by: String,
    pub performed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultRevision {
    pub id: Uuid,
    pub value: String,
    pub unit: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flag: Option<AbnormalFlag>,
    pub performed_by: String,
    pub performed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub verified_by: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    /// Submitted after an earlier revision of the same test had been verified.
    pub correction: bool,
    /// Crossed a critical limit (a `LL`/`HH` flag or a configured limit): raised once.
    pub critical: Option<AbnormalFlag>,
}

impl ResultRevision {
    pub fn is_final(&self) -> bool {
        self.verified_at.is_some()
    }
}
