//! ORU^R01: results for orders. Each OBR group finds its order by our order id (OBR-2, as
//! we send it), the ordering system's number (OBR-2, for orders an EHR placed), the
//! laboratory's number (OBR-3), or else by patient (PID-3 MRN) and test; its results join
//! the tests they are for. Results that find no order or no test are kept in the
//! unmatched queue, never dropped. Results the laboratory sent as final (OBX-11 `F`, or
//! `C` for a correction) were verified there, and count as verified.

use super::Applied;
use crate::app::{available_event, critical_events};
use crate::domain::{AbnormalFlag, CriticalLimits, LabOrder, SubmittedResult, Transition};
use crate::store::hl7::{Unmatched, UnmatchedObservation};
use crate::store::lookup::Lookups;
use chrono::{DateTime, Utc};
use events::{EventEnvelope, EventMeta};
use hl7v2::Hl7Error;
use hl7v2::messages::{ObservationResult, ReportedOrder, ResultMessage};
use kernel::TenantId;
use kernel::ids::LabOrderId;
use store::DbError;
use uuid::Uuid;

/// Matches the message's results to orders and applies them to the orders in memory:
/// reads only. What changed is in [`Applied::changed`], written afterwards from the
/// versions read here.
pub(super) async fn apply(
    tx: &mut impl Lookups,
    tenant: &TenantId,
    limits: &CriticalLimits,
    meta: &EventMeta,
    sender: &str,
    message: ResultMessage,
    now: DateTime<Utc>,
) -> Result<Result<Applied, Hl7Error>, DbError> {
    let mut events = Vec::new();
    let mut parked = Vec::new();
    // Orders as read and as changed.
    let mut changed: Vec<(LabOrder, LabOrder)> = Vec::new();
    let (mut matched, mut unmatched) = (0usize, 0usize);
    for (position, group) in (0_i16..).zip(message.orders) {
        // Each group's own patient: a message may report on several.
        let mrn = mrn_of(&group);
        let patient = match &mrn {
            Some(m) => tx.patient_by_mrn(tenant, m).await?,
            None => None,
        };
        let order = find_order(tx, tenant, &group, patient).await?;
        let Some(order) = order else {
            unmatched += group.observations.len().max(1);
            parked.push(park(
                position,
                "no order found",
                &mrn,
                &group,
                &group.observations,
                now,
            ));
            continue;
        };
        // A later group for an order an earlier one changed continues from that change.
        let earlier = changed.iter().position(|(_, o)| o.id == order.id);
        let current = earlier.map_or(&order, |i| &changed[i].1);
        let (taken, left) = split_by_test(current, &group);
        if !left.is_empty() {
            unmatched += left.len();
            parked.push(park(
                position,
                "no such test in the order",
                &mrn,
                &group,
                &left,
                now,
            ));
        }
        if taken.is_empty() {
            continue;
        }
        // A failed `record` may have changed part of its copy: that copy is dropped.
        let mut after = current.clone();
        match record(&mut after, &group, &taken, limits, sender, meta, now) {
            Ok(mut new_events) => {
                if after.filler_order.is_none() {
                    after.filler_order = group.filler_order.clone();
                }
                match earlier {
                    Some(i) => changed[i].1 = after,
                    None => changed.push((order, after)),
                }
                matched += taken.len();
                events.append(&mut new_events);
            }
            Err(t) => {
                unmatched += taken.len();
                let reason = format!("the order cannot take results: {t}");
                let taken: Vec<ObservationResult> = taken.into_iter().map(|(_, o)| o).collect();
                parked.push(park(position, &reason, &mrn, &group, &taken, now));
            }
        }
    }
    let status = match (matched, unmatched) {
        (_, 0) => "APPLIED",
        (0, _) => "UNMATCHED",
        _ => "PARTLY_UNMATCHED",
    };
    Ok(Ok(Applied {
        status,
        events,
        unmatched: parked,
        changed,
    }))
}

/// The MRN of a group's patient: the identifier of kind `MR`, or else the first.
fn mrn_of(group: &ReportedOrder) -> Option<String> {
    let p = group.patient.as_ref()?;
    p.identifiers
        .iter()
        .find(|i| i.kind.as_deref() == Some("MR"))
        .or_else(|| p.identifiers.first())
        .map(|i| i.id.clone())
}

/// Our order id in a placer number: the order id, or `<order id>-<n>` as we number each
/// test we send.
fn ours(placer: &str) -> Option<LabOrderId> {
    placer.get(..36).and_then(|s| s.parse::<LabOrderId>().ok())
}

/// The patients (by MRN) and orders (by our id) `message` looks up first, added to
/// `mrns` and `orders`: what a run of messages reads before it is applied.
pub(crate) fn lookup_keys(message: &ResultMessage, mrns: &mut Vec<String>, orders: &mut Vec<Uuid>) {
    for group in &message.orders {
        mrns.extend(mrn_of(group));
        orders.extend(
            group
                .placer_order
                .as_deref()
                .and_then(ours)
                .map(|id| id.as_uuid()),
        );
    }
}

/// The order a result group answers, if one can be told for sure.
async fn find_order(
    tx: &mut impl Lookups,
    tenant: &TenantId,
    group: &ReportedOrder,
    patient: Option<Uuid>,
) -> Result<Option<LabOrder>, DbError> {
    if let Some(placer) = &group.placer_order {
        if let Some(id) = ours(placer)
            && let Some(o) = tx.order(tenant, id).await?
        {
            return Ok(Some(o));
        }
        if let Some(o) = tx.order_by_number(tenant, "placer_order", placer).await? {
            return Ok(Some(o));
        }
    }
    if let Some(filler) = &group.filler_order
        && let Some(o) = tx.order_by_number(tenant, "filler_order", filler).await?
    {
        return Ok(Some(o));
    }
    let Some(patient) = patient else {
        return Ok(None);
    };
    // By patient and test: only when exactly one open order of theirs has the test.
    let codes = group_codes(group);
    let mut candidates: Vec<LabOrder> = tx
        .open_orders_of(tenant, patient)
        .await?
        .into_iter()
        .filter(|o| {
            o.tests
                .iter()
                .any(|t| codes.iter().any(|c| test_matches(t, c)))
        })
        .collect();
    Ok(if candidates.len() == 1 {
        candidates.pop()
    } else {
        None
    })
}

fn group_codes(group: &ReportedOrder) -> Vec<String> {
    let mut codes = vec![group.service.code.clone()];
    codes.extend(group.observations.iter().map(|o| o.code.code.clone()));
    codes
}

pub(crate) fn test_matches(t: &crate::domain::LabTest, code: &str) -> bool {
    t.test_code == code || t.loinc_code.as_deref() == Some(code)
}

/// Which observations have a test in the order (by its code or LOINC code; a single
/// observation also by the group's service code), and which do not.
fn split_by_test(
    order: &LabOrder,
    group: &ReportedOrder,
) -> (Vec<(String, ObservationResult)>, Vec<ObservationResult>) {
    let live = |code: &str| {
        order
            .tests
            .iter()
            .find(|t| test_matches(t, code) && t.status != crate::domain::TestStatus::Cancelled)
            .map(|t| t.test_code.clone())
    };
    let single = group.observations.len() == 1;
    let mut taken = Vec::new();
    let mut left = Vec::new();
    for obs in &group.observations {
        let test =
            live(&obs.code.code).or_else(|| single.then(|| live(&group.service.code)).flatten());
        match test {
            Some(code) if obs.value.is_some() => taken.push((code, obs.clone())),
            _ => left.push(obs.clone()),
        }
    }
    (taken, left)
}

/// The flags of HL7 table 0078 we keep; the others (`<`, `>`, `AA`, …) mean abnormal.
pub(crate) fn flag(flags: &[String]) -> Option<AbnormalFlag> {
    let f = flags.first()?;
    Some(AbnormalFlag::parse(f).unwrap_or(match f.as_str() {
        "<" | "LU" => AbnormalFlag::CriticalLow,
        ">" | "HU" => AbnormalFlag::CriticalHigh,
        "" => return None,
        _ => AbnormalFlag::Abnormal,
    }))
}

fn record(
    order: &mut LabOrder,
    group: &ReportedOrder,
    taken: &[(String, ObservationResult)],
    limits: &CriticalLimits,
    sender: &str,
    meta: &EventMeta,
    now: DateTime<Utc>,
) -> Result<Vec<EventEnvelope>, Transition> {
    let by = |o: &ObservationResult| {
        o.performed_by
            .as_ref()
            .and_then(|p| p.id.clone().or_else(|| p.display_name()))
            .unwrap_or_else(|| format!("hl7:{sender}"))
    };
    let results = taken
        .iter()
        .map(|(test_code, o)| {
            let result = submitted(
                test_code.clone(),
                o.value.as_deref().unwrap_or_default(),
                o.units.as_deref(),
                o.reference_range.as_deref(),
                &o.abnormal_flags,
                &by(o),
                o.observed_at.or(group.observed_at).unwrap_or(now),
            );
            (result, reported_final(o.status.as_deref()))
        })
        .collect();
    apply_results(order, results, &format!("hl7:{sender}"), limits, meta, now)
}

/// Results the laboratory sent as final (`F`, or `C` for a correction) were verified there.
fn reported_final(status: Option<&str>) -> bool {
    matches!(status, Some("F" | "C"))
}

/// A reported value as a result to record, cut to the sizes the columns keep.
fn submitted(
    test_code: String,
    value: &str,
    unit: Option<&str>,
    reference_range: Option<&str>,
    flags: &[String],
    performed_by: &str,
    performed_at: DateTime<Utc>,
) -> SubmittedResult {
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    SubmittedResult {
        test_code,
        value: cut(value, 500),
        unit: unit.map(|u| cut(u, 50)),
        reference_range: reference_range.map(|r| cut(r, 100)),
        abnormal_flag: flag(flags),
        performed_by: cut(performed_by, 100),
        performed_at,
    }
}

/// Records `results` (each with whether the laboratory reported it final) on `order`:
/// critical ones raise their events, final ones are verified by `verifier`, and a
/// completion or correction announces the order's results.
fn apply_results(
    order: &mut LabOrder,
    results: Vec<(SubmittedResult, bool)>,
    verifier: &str,
    limits: &CriticalLimits,
    meta: &EventMeta,
    now: DateTime<Utc>,
) -> Result<Vec<EventEnvelope>, Transition> {
    let (submitted, finals): (Vec<SubmittedResult>, Vec<bool>) = results.into_iter().unzip();
    let ids = order.record_results(submitted, limits, now)?;
    let mut events = critical_events(meta, order, &ids, now);
    let verified: Vec<Uuid> = ids
        .iter()
        .zip(finals)
        .filter(|(_, f)| *f)
        .map(|(id, _)| *id)
        .collect();
    if !verified.is_empty() {
        let v = order.verify_only(&verified, verifier, now)?;
        if v.completed || v.corrected {
            events.push(available_event(meta, order, now));
        }
    }
    Ok(events)
}

/// Results no order could take, for the unmatched queue (the message's id is set when it
/// is recorded).
fn park(
    position: i16,
    reason: &str,
    mrn: &Option<String>,
    group: &ReportedOrder,
    observations: &[ObservationResult],
    now: DateTime<Utc>,
) -> Unmatched {
    Unmatched {
        id: Uuid::now_v7(),
        message_id: Uuid::nil(),
        position,
        reason: reason.chars().take(100).collect(),
        patient_identifier: mrn.clone(),
        placer_order: group.placer_order.clone(),
        filler_order: group.filler_order.clone(),
        service_code: Some(group.service.code.clone()),
        observations: observations
            .iter()
            .map(|o| UnmatchedObservation {
                code: o.code.code.clone(),
                text: o.code.text.clone(),
                system: o.code.system.clone(),
                value: o.value.clone(),
                unit: o.units.clone(),
                reference_range: o.reference_range.clone(),
                abnormal_flags: o.abnormal_flags.clone(),
                status: o.status.clone(),
                observed_at: o.observed_at,
            })
            .collect(),
        received_at: now,
        status: "OPEN".to_owned(),
    }
}

/// Puts results from the unmatched queue on `order` (someone decided they are its): each
/// observation joins the test with its code; those reported final are verified, as they
/// were at the laboratory. `Err` names a code the order has no test for.
pub(crate) fn reconcile(
    order: &mut LabOrder,
    u: &Unmatched,
    by: &str,
    limits: &CriticalLimits,
    meta: &EventMeta,
    now: DateTime<Utc>,
) -> Result<Vec<EventEnvelope>, Transition> {
    let reconciler = format!("hl7 (reconciled by {by})");
    let mut results = Vec::new();
    for o in &u.observations {
        let Some(value) = o.value.as_deref() else {
            continue;
        };
        let test = order
            .tests
            .iter()
            .find(|t| test_matches(t, &o.code) && t.status != crate::domain::TestStatus::Cancelled)
            .or_else(|| {
                let code = u.service_code.as_deref()?;
                (u.observations.len() == 1).then_some(())?;
                order.tests.iter().find(|t| test_matches(t, code))
            })
            .ok_or_else(|| Transition::UnknownTest(o.code.clone()))?;
        let result = submitted(
            test.test_code.clone(),
            value,
            o.unit.as_deref(),
            o.reference_range.as_deref(),
            &o.abnormal_flags,
            &reconciler,
            o.observed_at.unwrap_or(u.received_at),
        );
        results.push((result, reported_final(o.status.as_deref())));
    }
    apply_results(order, results, &reconciler, limits, meta, now)
}
