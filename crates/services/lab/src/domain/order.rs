//! The lab order aggregate and its status machine (000 §4.1):
//! PENDING → COLLECTED → IN_PROGRESS → COMPLETED, and CANCELLED from any state before
//! COMPLETED. Results may arrive before a collection was recorded (an analyzer does not
//! wait for the ward's paperwork): they move a PENDING or COLLECTED order to IN_PROGRESS.
//! An order is COMPLETED when every test it still has holds a verified result.

use super::critical::CriticalLimits;
use super::result::{ResultRevision, SubmittedResult};
use super::specimen::Specimen;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::{LabOrderId, PatientId};
use kernel::lab_request::LabOrderRequest;
use uuid::Uuid;

/// STAT before URGENT before ROUTINE: the order of the pending list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Stat,
    Urgent,
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "STAT",
            Priority::Urgent => "URGENT",
            Priority::Routine => "ROUTINE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Priority::Stat, Priority::Urgent, Priority::Routine]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// HL7 table 0027: `S` stat, `A` as soon as possible, `R` routine.
    pub fn hl7(self) -> &'static str {
        match self {
            Priority::Stat => "S",
            Priority::Urgent => "A",
            Priority::Routine => "R",
        }
    }

    /// Sort key: 0 for STAT.
    pub fn rank(self) -> i16 {
        self as i16
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Collected,
    InProgress,
    Completed,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Collected,
        OrderStatus::InProgress,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Collected => "COLLECTED",
            OrderStatus::InProgress => "IN_PROGRESS",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }

    /// The forward steps of the machine (cancelling has its own command).
    fn may_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Collected) | (Pending | Collected, InProgress) | (InProgress, Completed)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStatus {
    Pending,
    InProgress,
    Completed,
    Cancelled,
}

impl TestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TestStatus::Pending => "PENDING",
            TestStatus::InProgress => "IN_PROGRESS",
            TestStatus::Completed => "COMPLETED",
            TestStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TestStatus::Pending,
            TestStatus::InProgress,
            TestStatus::Completed,
            TestStatus::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One test of an order and the results reported for it, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct LabTest {
    pub id: Uuid,
    pub test_code: String,
    pub test_name: String,
    pub loinc_code: Option<String>,
    pub status: TestStatus,
    pub results: Vec<ResultRevision>,
}

impl LabTest {
    /// The result that stands: the newest revision.
    pub fn current(&self) -> Option<&ResultRevision> {
        self.results.last()
    }

    fn is_final(&self) -> bool {
        self.current().is_some_and(ResultRevision::is_final)
    }
}

/// An order as placed: what was asked for, for whom.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLabOrder {
    pub patient_id: PatientId,
    pub mrn: Option<String>,
    pub request: LabOrderRequest,
    /// Insurance must approve it first (`insurance.preauth.approved.v1`).
    pub requires_preauthorization: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabOrder {
    pub id: LabOrderId,
    pub tenant: TenantId,
    pub patient_id: PatientId,
    pub mrn: Option<String>,
    pub ordering_provider_id: String,
    pub ordering_provider_name: String,
    pub priority: Priority,
    pub status: OrderStatus,
    pub tests: Vec<LabTest>,
    /// ICD-10-CM, the first being the primary diagnosis.
    pub diagnosis_codes: Vec<String>,
    pub specimens: Vec<Specimen>,
    pub ordered_at: DateTime<Utc>,
    pub collected_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub reported_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// Waiting for insurance: not collected, not sent to the laboratory, not pending work.
    pub awaiting_preauthorization: bool,
    pub preauthorization: Option<String>,
    /// The laboratory's own number for the order (HL7 filler order number), once known.
    pub filler_order: Option<String>,
    /// The ordering system's number, when an EHR placed the order over HL7 (its own id is
    /// the placer number otherwise).
    pub placer_order: Option<String>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// Why a command does not apply to the order as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transition {
    #[error("an order that is {from} cannot become {to}")]
    Illegal {
        from: &'static str,
        to: &'static str,
    },
    #[error("the order is {0}")]
    Closed(&'static str),
    #[error("the order waits for insurance pre-authorization")]
    AwaitingPreauthorization,
    #[error("every test needs a verified result first ({0} not yet)")]
    ResultsNotFinal(String),
    #[error("the order has no test {0}")]
    UnknownTest(String),
    #[error("the order has no specimen {0}")]
    UnknownSpecimen(Uuid),
    #[error("there is no unverified result to verify")]
    NothingToVerify,
}

/// What verifying changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub revisions: Vec<Uuid>,
    /// The order became COMPLETED just now: its results are available.
    pub completed: bool,
    /// It had been completed before: these are corrections.
    pub corrected: bool,
}

impl LabOrder {
    pub fn place(id: LabOrderId, tenant: TenantId, new: NewLabOrder, now: DateTime<Utc>) -> Self {
        let r = new.request;
        LabOrder {
            id,
            tenant,
            patient_id: new.patient_id,
            mrn: new.mrn,
            ordering_provider_id: r.ordering_provider_id,
            ordering_provider_name: r.ordering_provider_name,
            priority: Priority::parse(r.priority).unwrap_or(Priority::Routine),
            status: OrderStatus::Pending,
            tests: r
                .tests
                .into_iter()
                .map(|t| LabTest {
                    id: Uuid::now_v7(),
                    test_code: t.test_code,
                    test_name: t.test_name,
                    loinc_code: t.loinc_code,
                    status: TestStatus::Pending,
                    results: Vec::new(),
                })
                .collect(),
            diagnosis_codes: r.diagnosis_codes,
            specimens: Vec::new(),
            ordered_at: now,
            collected_at: None,
            received_at: None,
            reported_at: None,
            cancelled_at: None,
            cancel_reason: None,
            awaiting_preauthorization: new.requires_preauthorization,
            preauthorization: None,
            filler_order: None,
            placer_order: None,
            version: 1,
            updated_at: now,
        }
    }

    fn open(&self) -> Result<(), Transition> {
        if self.status.is_final() {
            return Err(Transition::Closed(self.status.as_str()));
        }
        Ok(())
    }

    fn touched(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }

    /// Leaves out of each test the results not verified yet, as the order is shown to
    /// the patient: a correction waiting for verification leaves the value it corrects.
    pub fn withhold_unverified(&mut self) {
        for test in &mut self.tests {
            test.results.retain(ResultRevision::is_final);
        }
    }

    /// The first test with `code`, not cancelled.
    pub fn test(&self, code: &str) -> Option<&LabTest> {
        self.tests
            .iter()
            .find(|t| t.test_code == code && t.status != TestStatus::Cancelled)
    }

    /// A specimen was collected for the order.
    pub fn collect(&mut self, specimen: Specimen, now: DateTime<Utc>) -> Result<(), Transition> {
        self.open()?;
        if self.awaiting_preauthorization {
            return Err(Transition::AwaitingPreauthorization);
        }
        if self.status == OrderStatus::Pending {
            self.status = OrderStatus::Collected;
        }
        self.collected_at.get_or_insert(specimen.collected_at);
        self.specimens.push(specimen);
        self.touched(now);
        Ok(())
    }

    /// The laboratory received a specimen, in the condition it describes.
    pub fn receive(
        &mut self,
        specimen: Uuid,
        at: DateTime<Utc>,
        condition: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), Transition> {
        self.open()?;
        let s = self
            .specimens
            .iter_mut()
            .find(|s| s.id == specimen)
            .ok_or(Transition::UnknownSpecimen(specimen))?;
        s.received_at = Some(at);
        if condition.is_some() {
            s.condition = condition;
        }
        self.received_at.get_or_insert(at);
        self.touched(now);
        Ok(())
    }

    /// Records the condition of a specimen (hemolyzed, clotted, insufficient, …).
    pub fn note_condition(
        &mut self,
        specimen: Uuid,
        condition: String,
        now: DateTime<Utc>,
    ) -> Result<(), Transition> {
        let s = self
            .specimens
            .iter_mut()
            .find(|s| s.id == specimen)
            .ok_or(Transition::UnknownSpecimen(specimen))?;
        s.condition = Some(condition);
        self.touched(now);
        Ok(())
    }

    /// `PUT …/status`: one step forward. COMPLETED needs every test's result verified.
    pub fn advance(&mut self, to: OrderStatus, now: DateTime<Utc>) -> Result<(), Transition> {
        if to == OrderStatus::Cancelled || !self.status.may_become(to) {
            return Err(Transition::Illegal {
                from: self.status.as_str(),
                to: to.as_str(),
            });
        }
        if self.awaiting_preauthorization {
            return Err(Transition::AwaitingPreauthorization);
        }
        if to == OrderStatus::Completed {
            if let Some(t) = self.unfinished() {
                return Err(Transition::ResultsNotFinal(t.test_code.clone()));
            }
            self.reported_at = Some(now);
        }
        if to == OrderStatus::Collected {
            self.collected_at.get_or_insert(now);
        }
        self.status = to;
        self.touched(now);
        Ok(())
    }

    fn unfinished(&self) -> Option<&LabTest> {
        self.tests
            .iter()
            .find(|t| t.status != TestStatus::Cancelled && !t.is_final())
    }

    /// Records reported values as new revisions of their tests. A value for a test whose
    /// result had been verified is a correction, final again only once verified. Returns
    /// the new revisions' ids; those that crossed a critical limit carry their flag.
    pub fn record_results(
        &mut self,
        results: Vec<SubmittedResult>,
        limits: &CriticalLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, Transition> {
        if self.status == OrderStatus::Cancelled {
            return Err(Transition::Closed(self.status.as_str()));
        }
        if self.awaiting_preauthorization {
            return Err(Transition::AwaitingPreauthorization);
        }
        if let Some(r) = results.iter().find(|r| self.test(&r.test_code).is_none()) {
            return Err(Transition::UnknownTest(r.test_code.clone()));
        }
        let mut ids = Vec::with_capacity(results.len());
        for r in results {
            let Some(test) = self
                .tests
                .iter_mut()
                .find(|t| t.test_code == r.test_code && t.status != TestStatus::Cancelled)
            else {
                continue;
            };
            let correction = test.results.iter().any(ResultRevision::is_final);
            let critical = limits.assess(test.loinc_code.as_deref(), &r.value, r.abnormal_flag);
            let id = Uuid::now_v7();
            test.results.push(ResultRevision {
                id,
                value: r.value,
                unit: r.unit,
                reference_range: r.reference_range,
                abnormal_flag: r.abnormal_flag,
                performed_by: r.performed_by,
                performed_at: r.performed_at,
                recorded_at: now,
                verified_by: None,
                verified_at: None,
                correction,
                critical,
            });
            test.status = TestStatus::InProgress;
            ids.push(id);
        }
        if matches!(self.status, OrderStatus::Pending | OrderStatus::Collected) {
            self.status = OrderStatus::InProgress;
        }
        self.touched(now);
        Ok(ids)
    }

    /// A supervisor verifies every result not yet verified. When that leaves no test
    /// without a verified result, the order is COMPLETED.
    pub fn verify(&mut self, by: &str, now: DateTime<Utc>) -> Result<Verified, Transition> {
        self.verify_where(by, now, |_| true)
    }

    /// Verifies only the revisions `ids`: results that arrive final from the laboratory's
    /// own system (HL7 OBX-11 `F` or `C`), verified there.
    pub fn verify_only(
        &mut self,
        ids: &[Uuid],
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, Transition> {
        self.verify_where(by, now, |id| ids.contains(&id))
    }

    fn verify_where(
        &mut self,
        by: &str,
        now: DateTime<Utc>,
        chosen: impl Fn(Uuid) -> bool,
    ) -> Result<Verified, Transition> {
        if self.status == OrderStatus::Cancelled {
            return Err(Transition::Closed(self.status.as_str()));
        }
        let mut revisions = Vec::new();
        for test in self
            .tests
            .iter_mut()
            .filter(|t| t.status != TestStatus::Cancelled)
        {
            if let Some(r) = test
                .results
                .last_mut()
                .filter(|r| !r.is_final() && chosen(r.id))
            {
                r.verified_by = Some(by.to_owned());
                r.verified_at = Some(now);
                revisions.push(r.id);
                test.status = TestStatus::Completed;
            }
        }
        if revisions.is_empty() {
            return Err(Transition::NothingToVerify);
        }
        let corrected = self.status == OrderStatus::Completed;
        let completed = !corrected && self.unfinished().is_none();
        if completed {
            self.status = OrderStatus::Completed;
            self.reported_at = Some(now);
        }
        self.touched(now);
        Ok(Verified {
            revisions,
            completed,
            corrected,
        })
    }

    /// Cancels the order and its tests without a result; a completed order stays.
    pub fn cancel(&mut self, reason: Option<String>, now: DateTime<Utc>) -> Result<(), Transition> {
        self.open()?;
        self.status = OrderStatus::Cancelled;
        self.cancelled_at = Some(now);
        self.cancel_reason = reason;
        for t in &mut self.tests {
            if t.status != TestStatus::Completed {
                t.status = TestStatus::Cancelled;
            }
        }
        self.touched(now);
        Ok(())
    }

    /// Insurance approved the order (`insurance.preauth.approved.v1`).
    pub fn authorize(&mut self, approval: String, now: DateTime<Utc>) {
        if self.awaiting_preauthorization {
            self.awaiting_preauthorization = false;
            self.preauthorization = Some(approval);
            self.touched(now);
        }
    }

    /// Whether any current result is outside its reference range.
    pub fn any_abnormal(&self) -> bool {
        self.tests.iter().any(|t| {
            t.current()
                .and_then(|r| r.abnormal_flag)
                .is_some_and(|f| f.is_abnormal())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AbnormalFlag, SpecimenType};
    use super::*;
    use kernel::lab_request::OrderedTest;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn order(tests: &[&str], preauth: bool) -> LabOrder {
        LabOrder::place(
            LabOrderId::new(),
            TenantId::parse("t").unwrap(),
            NewLabOrder {
                patient_id: PatientId::new(),
                mrn: None,
                request: LabOrderRequest {
                    tests: tests
                        .iter()
                        .map(|c| OrderedTest {
                            test_code: (*c).to_owned(),
                            test_name: format!("{c} test"),
                            loinc_code: Some("2345-7".into()),
                        })
                        .collect(),
                    priority: "STAT",
                    ordering_provider_id: "NPI1".into(),
                    ordering_provider_name: "Synthetic".into(),
                    diagnosis_codes: vec![],
                },
                requires_preauthorization: preauth,
            },
            now(),
        )
    }

    fn specimen() -> Specimen {
        Specimen {
            id: Uuid::now_v7(),
            specimen_type: SpecimenType::Blood,
            collected_at: now(),
            collected_by: "nurse-1".into(),
            received_at: None,
            condition: None,
        }
    }

    fn result(code: &str, value: &str, flag: Option<AbnormalFlag>) -> SubmittedResult {
        SubmittedResult {
            test_code: code.into(),
            value: value.into(),
            unit: Some("mg/dL".into()),
            reference_range: Some("70-99".into()),
            abnormal_flag: flag,
            performed_by: "tech-1".into(),
            performed_at: now(),
        }
    }

    #[test]
    fn an_order_walks_the_machine_to_completion_through_verified_results() {
        let limits = CriticalLimits::default();
        let mut o = order(&["GLU", "K"], false);
        o.collect(specimen(), now()).unwrap();
        assert_eq!(o.status, OrderStatus::Collected);
        let sid = o.specimens[0].id;
        o.receive(sid, now(), Some("ACCEPTABLE".into()), now())
            .unwrap();
        o.advance(OrderStatus::InProgress, now()).unwrap();
        assert_eq!(
            o.advance(OrderStatus::Completed, now()),
            Err(Transition::ResultsNotFinal("GLU".into()))
        );
        o.record_results(
            vec![result("GLU", "120", Some(AbnormalFlag::High))],
            &limits,
            now(),
        )
        .unwrap();
        let v = o.verify("sup-1", now()).unwrap();
        assert!(!v.completed, "K has no result yet");
        o.record_results(
            vec![result("K", "4.0", Some(AbnormalFlag::Normal))],
            &limits,
            now(),
        )
        .unwrap();
        let v = o.verify("sup-1", now()).unwrap();
        assert!(v.completed && !v.corrected);
        assert_eq!(o.status, OrderStatus::Completed);
        assert!(o.reported_at.is_some() && o.any_abnormal());
        assert_eq!(o.cancel(None, now()), Err(Transition::Closed("COMPLETED")));

        // A correction keeps the history and is final again only once verified.
        o.record_results(vec![result("GLU", "118", None)], &limits, now())
            .unwrap();
        let glu = o.test("GLU").unwrap();
        assert_eq!(glu.results.len(), 2);
        assert!(glu.results[1].correction && !glu.results[1].is_final());
        assert!(glu.results[0].is_final());
        let v = o.verify("sup-1", now()).unwrap();
        assert!(v.corrected && !v.completed);
        assert_eq!(o.verify("sup-1", now()), Err(Transition::NothingToVerify));
    }

    #[test]
    fn illegal_steps_are_refused_and_cancel_works_before_completion() {
        let mut o = order(&["GLU"], false);
        for to in [
            OrderStatus::Completed,
            OrderStatus::Cancelled,
            OrderStatus::Pending,
        ] {
            assert!(
                matches!(o.advance(to, now()), Err(Transition::Illegal { .. })),
                "{to:?}"
            );
        }
        let before = o.version;
        o.cancel(Some("duplicate".into()), now()).unwrap();
        assert_eq!(o.version, before + 1);
        assert_eq!(o.tests[0].status, TestStatus::Cancelled);
        assert_eq!(
            o.collect(specimen(), now()),
            Err(Transition::Closed("CANCELLED"))
        );
        assert!(
            o.record_results(
                vec![result("GLU", "1", None)],
                &CriticalLimits::default(),
                now()
            )
            .is_err()
        );
    }

    #[test]
    fn results_before_collection_start_the_work_and_unknown_tests_are_refused() {
        let mut o = order(&["GLU"], false);
        let limits = CriticalLimits::parse("2345-7:40:400").unwrap();
        assert_eq!(
            o.record_results(vec![result("XYZ", "1", None)], &limits, now()),
            Err(Transition::UnknownTest("XYZ".into()))
        );
        o.record_results(
            vec![result("GLU", "35", Some(AbnormalFlag::Low))],
            &limits,
            now(),
        )
        .unwrap();
        assert_eq!(o.status, OrderStatus::InProgress);
        assert_eq!(
            o.tests[0].results[0].critical,
            Some(AbnormalFlag::CriticalLow),
            "a configured limit makes it critical"
        );
    }

    #[test]
    fn an_order_waiting_for_insurance_is_not_worked_on() {
        let mut o = order(&["GLU"], true);
        assert_eq!(
            o.collect(specimen(), now()),
            Err(Transition::AwaitingPreauthorization)
        );
        o.authorize("APR-1".into(), now());
        o.collect(specimen(), now()).unwrap();
        assert_eq!(o.preauthorization.as_deref(), Some("APR-1"));
    }

    #[test]
    fn priorities_sort_stat_first() {
        let mut p = vec![Priority::Routine, Priority::Stat, Priority::Urgent];
        p.sort();
        assert_eq!(p, [Priority::Stat, Priority::Urgent, Priority::Routine]);
    }
}
