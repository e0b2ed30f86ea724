//! When a result is critical: its flag says so (`HH`, `LL`), or its value crosses a limit
//! configured for its LOINC code (`MEDITRACK_LAB_CRITICAL_LIMITS`), whatever flag the
//! instrument gave it.

use super::AbnormalFlag;
use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriticalLimits {
    by_loinc: HashMap<String, (Option<f64>, Option<f64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("critical limits are `LOINC:low:high` separated by `;` (either bound may be empty): {0}")]
pub struct BadLimits(pub String);

impl CriticalLimits {
    /// `2345-7:40:450;2823-3:2.8:6.2;718-7:7:` — values at or beyond a bound are critical.
    pub fn parse(spec: &str) -> Result<Self, BadLimits> {
        let mut by_loinc = HashMap::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || BadLimits(entry.to_owned());
            let mut parts = entry.split(':');
            let (Some(code), Some(low), Some(high), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let bound = |s: &str| -> Result<Option<f64>, BadLimits> {
                match s.trim() {
                    "" => Ok(None),
                    v => v.parse().map(Some).map_err(|_| bad()),
                }
            };
            let (low, high) = (bound(low)?, bound(high)?);
            if low.is_none() && high.is_none() || code.trim().is_empty() {
                return Err(bad());
            }
            by_loinc.insert(code.trim().to_owned(), (low, high));
        }
        Ok(Self { by_loinc })
    }

    /// The critical flag a result earns, if any.
    pub fn assess(
        &self,
        loinc: Option<&str>,
        value: &str,
        flag: Option<AbnormalFlag>,
    ) -> Option<AbnormalFlag> {
        if let Some(f) = flag.filter(|f| f.is_critical()) {
            return Some(f);
        }
        let (low, high) = self.by_loinc.get(loinc?)?;
        let v: f64 = value.trim().parse().ok()?;
        if low.is_some_and(|l| v <= l) {
            Some(AbnormalFlag::CriticalLow)
        } else if high.is_some_and(|h| v >= h) {
            Some(AbnormalFlag::CriticalHigh)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_configured_limits_make_a_result_critical() {
        let limits = CriticalLimits::parse("2345-7:40:450; 2823-3::6.2").unwrap();
        let glucose = Some("2345-7");
        assert_eq!(
            limits.assess(glucose, "38", Some(AbnormalFlag::Low)),
            Some(AbnormalFlag::CriticalLow)
        );
        assert_eq!(
            limits.assess(glucose, "450", None),
            Some(AbnormalFlag::CriticalHigh)
        );
        assert_eq!(
            limits.assess(glucose, "120", Some(AbnormalFlag::High)),
            None
        );
        assert_eq!(limits.assess(glucose, "positive", None), None);
        assert_eq!(
            limits.assess(Some("2823-3"), "1.0", None),
            None,
            "no low bound"
        );
        assert_eq!(
            limits.assess(None, "1", Some(AbnormalFlag::CriticalHigh)),
            Some(AbnormalFlag::CriticalHigh)
        );
        assert_eq!(limits.assess(Some("9999-9"), "1e9", None), None);
        for bad in ["2345-7:40", "2345-7:x:1", ":1:2", "2345-7::", "a:1:2:3"] {
            assert!(CriticalLimits::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CriticalLimits::parse("").unwrap(),
            CriticalLimits::default()
        );
    }
}
