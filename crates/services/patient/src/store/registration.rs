//! A registration on SQLite as one direct write ([`store::direct`]): the MRN counter, the
//! patient with its addresses and insurance, its timeline entry, its events and its
//! idempotency key, in one savepoint of a group commit.
//!
//! Through sqlx a registration was two turns of the database's writers (the MRN counter's,
//! then the patient's) and about a dozen statements, each a round trip to the connection's
//! thread while every other writer waited: that turn, not the CPU, set the rate of
//! `POST /patients`. Here the whole registration runs on the writers' thread in one go.
//! The rows are the ones `sql.rs` writes through sqlx, values encoded as sqlx encodes them.

use super::sql::seal_ssn;
use super::statements::{
    ADDRESS_PARAMS, IDEMPOTENCY_PARAMS, INSERT_ADDRESS, INSERT_IDEMPOTENCY, INSERT_INSURANCE,
    INSERT_PATIENT, INSERT_TIMELINE, INSURANCE_PARAMS, PATIENT_PARAMS, TIMELINE_PARAMS, numbered,
};
use super::{MRN_ATTEMPTS, OwnedIdempotencyRecord, Registration};
use crate::domain::name::search_key;
use crate::domain::{Mrn, Patient};
use auth::sealing::FieldCipher;
use chrono::Utc;
use kernel::TenantId;
use rusqlite::{Transaction, params};
use store::direct::time;
use store::error::direct_unique_violation;
use store::outbox;
use uuid::Uuid;

/// Registers the patient `build` makes for `mrn`, or for the tenant's next generated MRN;
/// a generated MRN a client already took is passed over for the next, a few times. `None`
/// when they were all taken: nothing is registered, but the counter keeps its steps (the
/// job succeeds), so the next registration does not meet the same MRNs again.
pub(super) fn register(
    tx: &Transaction<'_>,
    cipher: &FieldCipher,
    tenant: &TenantId,
    mrn: Option<&Mrn>,
    build: &dyn Fn(Mrn) -> Registration,
    idempotency: Option<&OwnedIdempotencyRecord>,
) -> rusqlite::Result<Option<Patient>> {
    let attempts = if mrn.is_some() { 1 } else { MRN_ATTEMPTS };
    for _ in 0..attempts {
        let mrn = match mrn {
            Some(m) => m.clone(),
            None => next_mrn(tx, tenant)?,
        };
        let r = build(mrn);
        // The counter's step stays when the rows are undone, so the next try gets the next value.
        tx.prepare_cached("SAVEPOINT registration")?.execute([])?;
        match insert(tx, cipher, &r, idempotency) {
            Ok(()) => {
                tx.prepare_cached("RELEASE registration")?.execute([])?;
                return Ok(Some(r.patient));
            }
            Err(e) => {
                tx.execute_batch("ROLLBACK TO registration; RELEASE registration")?;
                let mrn_taken = direct_unique_violation(&e)
                    .is_some_and(|v| v.is("idx_patients_mrn", "patients.tenant_id, patients.mrn"));
                if !mrn_taken {
                    return Err(e);
                }
            }
        }
    }
    Ok(None)
}

fn next_mrn(tx: &Transaction<'_>, tenant: &TenantId) -> rusqlite::Result<Mrn> {
    let n: i64 = tx
        .prepare_cached(
            "INSERT INTO mrn_counters (tenant_id, last_value) VALUES (?1, 1)
             ON CONFLICT (tenant_id) DO UPDATE SET last_value = mrn_counters.last_value + 1
             RETURNING last_value",
        )?
        .query_row([tenant.as_str()], |row| row.get(0))?;
    Ok(Mrn::generated(n))
}

fn insert(
    tx: &Transaction<'_>,
    cipher: &FieldCipher,
    r: &Registration,
    idempotency: Option<&OwnedIdempotencyRecord>,
) -> rusqlite::Result<()> {
    let p = &r.patient;
    let ssn = seal_ssn(cipher, p);
    let id = p.id.as_uuid();
    tx.prepare_cached(&numbered(INSERT_PATIENT, 1, PATIENT_PARAMS))?
        .execute(params![
            ssn.sealed,
            ssn.index,
            p.name.first(),
            p.name.middle(),
            p.name.last(),
            search_key(p.name.first()),
            search_key(p.name.last()),
            p.date_of_birth.date().to_string(),
            p.gender.map(|g| g.as_str()),
            p.phone.as_ref().map(|x| x.expose()),
            p.email.as_ref().map(|x| x.expose()),
            p.email.as_ref().map(|x| x.search_key()),
            id.as_bytes().as_slice(),
            p.tenant.as_str(),
            p.mrn.as_str(),
            time(p.created_at),
            time(p.updated_at),
            p.created_by,
            p.updated_by,
            p.version,
        ])?;
    let mut address = tx.prepare_cached(&numbered(INSERT_ADDRESS, 1, ADDRESS_PARAMS))?;
    for (position, a) in (0_i16..).zip(&p.addresses) {
        address.execute(params![
            Uuid::now_v7().as_bytes().as_slice(),
            p.tenant.as_str(),
            id.as_bytes().as_slice(),
            position,
            a.address_type(),
            a.street_line1(),
            a.street_line2(),
            a.city(),
            a.state(),
            a.zip_code(),
            a.country(),
            a.is_primary(),
        ])?;
    }
    let mut insurance = tx.prepare_cached(&numbered(INSERT_INSURANCE, 1, INSURANCE_PARAMS))?;
    for (position, i) in (0_i16..).zip(&p.insurance) {
        insurance.execute(params![
            Uuid::now_v7().as_bytes().as_slice(),
            p.tenant.as_str(),
            id.as_bytes().as_slice(),
            position,
            i.policy_number(),
            i.payer_id(),
            i.payer_name(),
            i.group_number(),
            i.policy_holder_name(),
            i.relationship_to_insured(),
            i.effective_date().to_string(),
            i.termination_date().map(|d| d.to_string()),
            i.is_primary(),
        ])?;
    }
    let e = &r.timeline;
    let details = serde_json::to_string(&e.event)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(&numbered(INSERT_TIMELINE, 1, TIMELINE_PARAMS))?
        .execute(params![
            e.id.as_uuid().as_bytes().as_slice(),
            p.tenant.as_str(),
            e.patient_id.as_uuid().as_bytes().as_slice(),
            time(e.occurred_at),
            e.event.kind(),
            details,
        ])?;
    outbox::append_direct(tx, &r.events)?;
    if let Some(k) = idempotency {
        tx.prepare_cached(&numbered(INSERT_IDEMPOTENCY, 1, IDEMPOTENCY_PARAMS))?
            .execute(params![
                p.tenant.as_str(),
                k.key,
                k.operation,
                k.request_digest,
                k.resource_id.as_bytes().as_slice(),
                time(Utc::now()),
            ])?;
    }
    Ok(())
}
