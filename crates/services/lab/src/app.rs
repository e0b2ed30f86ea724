//! Use cases of the lab service: one async fn per command or query. Each checks the
//! caller's permission (000 §5.1), records the PHI access in the audit trail before it
//! answers, and writes the order with the events its change produced.

use crate::domain::{
    CriticalLimits, LabOrder, NewLabOrder, OrderStatus, Specimen, SubmittedResult, Transition,
};
use crate::errors::{CreateOrderError, ListError, OrderError, ReconcileError};
use crate::store::hl7::{MessageSummary, Unmatched};
use crate::store::{LabStore, WriteError};
use auth::{Permission, Scope};
use chrono::{DateTime, Utc};
use events::lab::{
    LabCriticalResultV1, LabResultsAvailableV1, LabTestCancelledV1, LabTestOrderedV1, OrderedTest,
};
use events::{EventEnvelope, EventMeta};
use kernel::audit::{AuditAction, AuditOutcome, AuditRecord, AuditTrail, Origin};
use kernel::ids::{CorrelationId, LabOrderId};
use kernel::paging::{Page, PageRequest};
use kernel::{Clock, Principal};
use std::sync::Arc;
use uuid::Uuid;

pub const SOURCE: &str = crate::SERVICE;
pub const CRITICAL_RESULTS: &str = "meditrack_critical_results_total";
pub const DENIALS: &str = "meditrack_permission_denials_total";
const RESOURCE: &str = "LabOrder";

/// Concurrent changes to one order (results from two analyzers) are applied one after the
/// other: a lost race is retried on the fresh order this many times.
const ATTEMPTS: usize = 5;

/// Who is acting, and the correlation id every event written for this request carries.
#[derive(Debug, Clone)]
pub struct Context {
    pub principal: Principal,
    pub correlation_id: CorrelationId,
    pub origin: Origin,
}

impl Context {
    fn authorize(&self, permission: Permission) -> Result<Scope, auth::Forbidden> {
        auth::authorize(&self.principal, permission).inspect_err(|_| {
            metrics::counter!(DENIALS).increment(1);
            tracing::info!(subject = %self.principal.subject, ?permission, "permission denied");
        })
    }

    fn meta(&self, now: DateTime<Utc>) -> EventMeta {
        EventMeta {
            source: SOURCE,
            tenant: self.principal.tenant.clone(),
            correlation_id: self.correlation_id,
            causation_id: None,
            occurred_at: now,
        }
    }

    fn record(&self, action: AuditAction, order: &LabOrder, now: DateTime<Utc>) -> AuditRecord {
        AuditRecord::by(&self.principal, &self.origin, action, RESOURCE, now)
            .resource(order.id)
            .patient(order.patient_id.as_uuid())
    }
}

#[derive(Debug)]
pub struct LabService<S> {
    store: S,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditTrail>,
    limits: CriticalLimits,
}

/// What a command does to an order: the change, and the events it makes.
type Change<'a> = Box<
    dyn FnMut(&mut LabOrder, DateTime<Utc>) -> Result<Vec<EventEnvelope>, Transition> + Send + 'a,
>;

impl<S: LabStore> LabService<S> {
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditTrail>,
        limits: CriticalLimits,
    ) -> Self {
        Self {
            store,
            clock,
            audit,
            limits,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Records a refusal; a denial the trail misses discloses nothing, so it is best effort.
    async fn denied(&self, ctx: &Context, order: Option<&LabOrder>) {
        let now = self.now();
        let mut r = AuditRecord::by(
            &ctx.principal,
            &ctx.origin,
            AuditAction::Access,
            RESOURCE,
            now,
        )
        .outcome(AuditOutcome::Denied);
        if let Some(o) = order {
            r = r.resource(o.id).patient(o.patient_id.as_uuid());
        }
        let _ = self.audit.record(vec![r]).await;
    }

    async fn authorize(
        &self,
        ctx: &Context,
        permission: Permission,
    ) -> Result<Scope, auth::Forbidden> {
        match ctx.authorize(permission) {
            Ok(scope) => Ok(scope),
            Err(e) => {
                self.denied(ctx, None).await;
                Err(e)
            }
        }
    }

    /// `POST /api/v1/lab/orders`.
    pub async fn create_order(
        &self,
        ctx: &Context,
        new: NewLabOrder,
    ) -> Result<LabOrder, CreateOrderError> {
        self.authorize(ctx, Permission::LabOrderCreate).await?;
        let now = self.now();
        let order = LabOrder::place(LabOrderId::new(), ctx.principal.tenant.clone(), new, now);
        let event = EventEnvelope::new(&ctx.meta(now), order.id, &ordered_event(&order));
        self.store
            .insert(&order, &[event])
            .await
            .map_err(|e| match e {
                WriteError::Db(e) => CreateOrderError::Store(e),
                other => CreateOrderError::Store(store::DbError::Invariant(match other {
                    WriteError::Exists => "a new order id was taken",
                    _ => "a new order conflicted",
                })),
            })?;
        self.audit
            .record(vec![ctx.record(AuditAction::Create, &order, now)])
            .await?;
        Ok(order)
    }

    /// The order as `permission` lets the caller see it: another patient's (for a PATIENT)
    /// is not found, and the attempt is recorded.
    async fn load(
        &self,
        ctx: &Context,
        permission: Permission,
        id: LabOrderId,
    ) -> Result<LabOrder, OrderError> {
        let scope = self.authorize(ctx, permission).await?;
        let order = self
            .store
            .order(&ctx.principal.tenant, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        if !scope.admits(order.patient_id.as_uuid()) {
            self.denied(ctx, Some(&order)).await;
            return Err(OrderError::NotFound);
        }
        Ok(order)
    }

    /// `GET /api/v1/lab/orders/{id}`.
    pub async fn order(&self, ctx: &Context, id: LabOrderId) -> Result<LabOrder, OrderError> {
        self.read(ctx, Permission::LabOrderRead, id).await
    }

    /// `GET /api/v1/lab/results/{orderId}`: the order with its results.
    pub async fn results(&self, ctx: &Context, id: LabOrderId) -> Result<LabOrder, OrderError> {
        self.read(ctx, Permission::LabResultRead, id).await
    }

    /// The order, as `permission` lets the caller read it, recorded as read. A PATIENT
    /// reads their own results once verified: a preliminary value may yet be corrected,
    /// and is for their care team to interpret first.
    async fn read(
        &self,
        ctx: &Context,
        permission: Permission,
        id: LabOrderId,
    ) -> Result<LabOrder, OrderError> {
        let mut order = self.load(ctx, permission, id).await?;
        self.audit
            .record(vec![ctx.record(AuditAction::Read, &order, self.now())])
            .await?;
        if let Ok(Scope::Patient(_)) = ctx.authorize(permission) {
            order.withhold_unverified();
        }
        Ok(order)
    }

    /// `GET /api/v1/lab/orders/pending`: the work list, for the tenant's staff only.
    pub async fn pending(
        &self,
        ctx: &Context,
        page: &PageRequest,
    ) -> Result<Page<LabOrder>, ListError> {
        self.staff(ctx, Permission::LabOrderRead).await?;
        let page = self.store.pending(&ctx.principal.tenant, page).await?;
        let now = self.now();
        let records = page
            .items
            .iter()
            .map(|o| ctx.record(AuditAction::Search, o, now))
            .collect();
        self.audit.record(records).await?;
        Ok(page)
    }

    /// The tenant's staff only: the work lists are not a patient's to see.
    async fn staff(&self, ctx: &Context, permission: Permission) -> Result<(), ListError> {
        let scope = self.authorize(ctx, permission).await?;
        if scope != Scope::Tenant {
            self.denied(ctx, None).await;
            return Err(ListError::Forbidden);
        }
        Ok(())
    }

    /// `GET /api/v1/lab/results/unmatched`: HL7 results no order could take yet.
    pub async fn unmatched(
        &self,
        ctx: &Context,
        page: &PageRequest,
    ) -> Result<Page<Unmatched>, ListError> {
        self.staff(ctx, Permission::LabResultRead).await?;
        let page = self.store.unmatched(&ctx.principal.tenant, page).await?;
        let now = self.now();
        let records = page
            .items
            .iter()
            .map(|u| {
                AuditRecord::by(
                    &ctx.principal,
                    &ctx.origin,
                    AuditAction::Search,
                    "UnmatchedResult",
                    now,
                )
                .resource(u.id)
            })
            .collect();
        self.audit.record(records).await?;
        Ok(page)
    }

    /// `POST /api/v1/lab/results/unmatched/{id}/reconcile`: someone decided which order
    /// results from the unmatched queue belong to; they join it as if they had matched.
    pub async fn reconcile(
        &self,
        ctx: &Context,
        unmatched: Uuid,
        order: LabOrderId,
    ) -> Result<LabOrder, ReconcileError> {
        self.authorize(ctx, Permission::LabResultWrite).await?;
        let now = self.now();
        let (limits, meta, by) = (&self.limits, ctx.meta(now), ctx.principal.subject.clone());
        let reconciled = self
            .store
            .reconcile(
                &ctx.principal.tenant,
                unmatched,
                order,
                &ctx.principal.subject,
                Box::new(move |o, u| crate::hl7::results::reconcile(o, u, &by, limits, &meta, now)),
            )
            .await?;
        self.audit
            .record(vec![ctx.record(AuditAction::Update, &reconciled, now)])
            .await?;
        Ok(reconciled)
    }

    /// `GET /api/v1/lab/messages`: the HL7 messages received and what became of each
    /// (their content stays in the log).
    pub async fn messages(
        &self,
        ctx: &Context,
        page: &PageRequest,
    ) -> Result<Page<MessageSummary>, ListError> {
        self.staff(ctx, Permission::LabResultRead).await?;
        Ok(self.store.messages(&ctx.principal.tenant, page).await?)
    }

    pub async fn message(
        &self,
        ctx: &Context,
        id: Uuid,
    ) -> Result<Option<MessageSummary>, ListError> {
        self.staff(ctx, Permission::LabResultRead).await?;
        Ok(self.store.message(&ctx.principal.tenant, id).await?)
    }

    /// Applies `change` to the order and saves it, retrying on a concurrent change unless
    /// the caller named the version it saw (`If-Match`).
    async fn change(
        &self,
        ctx: &Context,
        permission: Permission,
        id: LabOrderId,
        expected: Option<i64>,
        mut change: Change<'_>,
    ) -> Result<LabOrder, OrderError> {
        for _ in 0..ATTEMPTS {
            let mut order = self.load(ctx, permission, id).await?;
            if expected.is_some_and(|v| v != order.version) {
                return Err(OrderError::VersionMismatch);
            }
            let before = order.clone();
            let now = self.now();
            let events = change(&mut order, now)?;
            match self.store.update(&before, &order, &events).await {
                Ok(()) => {
                    self.audit
                        .record(vec![ctx.record(AuditAction::Update, &order, now)])
                        .await?;
                    return Ok(order);
                }
                Err(WriteError::VersionConflict) if expected.is_none() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OrderError::VersionMismatch)
    }

    /// `PUT /api/v1/lab/orders/{id}/status`.
    pub async fn advance(
        &self,
        ctx: &Context,
        id: LabOrderId,
        to: OrderStatus,
        expected: Option<i64>,
    ) -> Result<LabOrder, OrderError> {
        let meta = |now| ctx.meta(now);
        self.change(
            ctx,
            Permission::LabOrderUpdateStatus,
            id,
            expected,
            Box::new(move |o, now| {
                o.advance(to, now)?;
                Ok(if to == OrderStatus::Completed {
                    vec![available_event(&meta(now), o, now)]
                } else {
                    Vec::new()
                })
            }),
        )
        .await
    }

    /// `POST /api/v1/lab/orders/{id}/cancel`.
    pub async fn cancel(
        &self,
        ctx: &Context,
        id: LabOrderId,
        reason: Option<String>,
        expected: Option<i64>,
    ) -> Result<LabOrder, OrderError> {
        let by = ctx.principal.subject.clone();
        self.change(
            ctx,
            Permission::LabOrderCancel,
            id,
            expected,
            Box::new(move |o, now| {
                o.cancel(reason.clone(), now)?;
                let event = LabTestCancelledV1 {
                    order_id: o.id,
                    patient_id: o.patient_id,
                    cancelled_by: by.clone(),
                    reason: o.cancel_reason.clone(),
                    cancelled_at: now,
                };
                Ok(vec![EventEnvelope::new(&ctx.meta(now), o.id, &event)])
            }),
        )
        .await
    }

    /// `POST …/specimens`: a specimen was collected.
    pub async fn collect(
        &self,
        ctx: &Context,
        id: LabOrderId,
        specimen: Specimen,
    ) -> Result<LabOrder, OrderError> {
        self.change(
            ctx,
            Permission::LabOrderUpdateStatus,
            id,
            None,
            Box::new(move |o, now| {
                o.collect(specimen.clone(), now)?;
                Ok(Vec::new())
            }),
        )
        .await
    }

    /// `POST …/specimens/{sid}/receipt`: the laboratory received a specimen.
    pub async fn receive(
        &self,
        ctx: &Context,
        id: LabOrderId,
        specimen: Uuid,
        at: Option<DateTime<Utc>>,
        condition: Option<String>,
    ) -> Result<LabOrder, OrderError> {
        self.change(
            ctx,
            Permission::LabOrderUpdateStatus,
            id,
            None,
            Box::new(move |o, now| {
                o.receive(specimen, at.unwrap_or(now), condition.clone(), now)?;
                Ok(Vec::new())
            }),
        )
        .await
    }

    /// `PUT …/specimens/{sid}/condition`.
    pub async fn note_condition(
        &self,
        ctx: &Context,
        id: LabOrderId,
        specimen: Uuid,
        condition: String,
    ) -> Result<LabOrder, OrderError> {
        self.change(
            ctx,
            Permission::LabOrderUpdateStatus,
            id,
            None,
            Box::new(move |o, now| {
                o.note_condition(specimen, condition.clone(), now)?;
                Ok(Vec::new())
            }),
        )
        .await
    }

    /// `POST /api/v1/lab/results`: values for tests of an order, preliminary until
    /// verified. A value past a critical limit raises `lab.critical.result.v1` at once.
    pub async fn submit_results(
        &self,
        ctx: &Context,
        id: LabOrderId,
        results: Vec<SubmittedResult>,
    ) -> Result<LabOrder, OrderError> {
        let limits = &self.limits;
        let order = self
            .change(
                ctx,
                Permission::LabResultWrite,
                id,
                None,
                Box::new(move |o, now| {
                    let new = o.record_results(results.clone(), limits, now)?;
                    Ok(critical_events(&ctx.meta(now), o, &new, now))
                }),
            )
            .await?;
        let critical = order
            .tests
            .iter()
            .filter_map(|t| t.current())
            .filter(|r| r.critical.is_some() && r.verified_at.is_none())
            .count();
        if critical > 0 {
            metrics::counter!(CRITICAL_RESULTS).increment(critical as u64);
        }
        Ok(order)
    }

    /// `POST /api/v1/lab/results/{orderId}/verify`: a supervisor makes the results final.
    /// When that completes the order (or corrects a completed one), its results are
    /// announced as available.
    pub async fn verify(
        &self,
        ctx: &Context,
        id: LabOrderId,
        expected: Option<i64>,
    ) -> Result<LabOrder, OrderError> {
        let by = ctx.principal.subject.clone();
        self.change(
            ctx,
            Permission::LabResultVerify,
            id,
            expected,
            Box::new(move |o, now| {
                let v = o.verify(&by, now)?;
                Ok(if v.completed || v.corrected {
                    vec![available_event(&ctx.meta(now), o, now)]
                } else {
                    Vec::new()
                })
            }),
        )
        .await
    }
}

pub(crate) fn ordered_event(o: &LabOrder) -> LabTestOrderedV1 {
    LabTestOrderedV1 {
        order_id: o.id,
        patient_id: o.patient_id,
        mrn: o.mrn.clone().unwrap_or_default(),
        tests: o
            .tests
            .iter()
            .map(|t| OrderedTest {
                test_code: t.test_code.clone(),
                test_name: t.test_name.clone(),
                loinc_code: t.loinc_code.clone(),
            })
            .collect(),
        priority: o.priority.as_str().to_owned(),
        ordering_provider_id: o.ordering_provider_id.clone(),
        ordering_provider_name: o.ordering_provider_name.clone(),
        diagnosis_codes: o.diagnosis_codes.clone(),
        ordered_at: o.ordered_at,
    }
}

pub(crate) fn available_event(meta: &EventMeta, o: &LabOrder, now: DateTime<Utc>) -> EventEnvelope {
    let event = LabResultsAvailableV1 {
        order_id: o.id,
        patient_id: o.patient_id,
        test_codes: o
            .tests
            .iter()
            .filter(|t| t.current().is_some_and(|r| r.is_final()))
            .map(|t| t.test_code.clone())
            .collect(),
        abnormal: o.any_abnormal(),
        reported_at: now,
    };
    EventEnvelope::new(meta, o.id, &event)
}

/// One `lab.critical.result.v1` for each new revision that crossed a critical limit.
pub(crate) fn critical_events(
    meta: &EventMeta,
    o: &LabOrder,
    new: &[Uuid],
    now: DateTime<Utc>,
) -> Vec<EventEnvelope> {
    o.tests
        .iter()
        .flat_map(|t| t.results.iter().map(move |r| (t, r)))
        .filter(|(_, r)| new.contains(&r.id))
        .filter_map(|(t, r)| {
            let flag = r.critical?;
            let event = LabCriticalResultV1 {
                order_id: o.id,
                result_id: r.id,
                patient_id: o.patient_id,
                test_code: t.test_code.clone(),
                loinc_code: t.loinc_code.clone(),
                value: r.value.clone(),
                unit: r.unit.clone(),
                abnormal_flag: flag.as_str().to_owned(),
                ordering_provider_id: o.ordering_provider_id.clone(),
                reported_at: now,
            };
            Some(EventEnvelope::new(meta, o.id, &event))
        })
        .collect()
}
