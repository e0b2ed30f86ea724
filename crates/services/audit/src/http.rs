//! `GET /api/v1/audit` (HEALTHCARE_ADMIN: the tenant's trail, filtered and paged) and
//! `GET /api/v1/patients/{id}/access-log` (who saw my record: the patient and admins).
//! Reading the trail is itself recorded.

use crate::chain::Entry;
use crate::store::{AuditStore, Filter, ReadError};
use auth::Permission;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use kernel::audit::{AuditAction, AuditOutcome, AuditRecord, AuditTrail};
use kernel::{FieldError, FieldErrors, Principal, Role};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;
use web::{Caller, PageBody, Problem, QueryParams, page_request};

#[derive(Debug, Clone)]
pub struct AuditApi {
    pub store: AuditStore,
    pub trail: Arc<dyn AuditTrail>,
}

type Api = Arc<AuditApi>;

pub fn router(api: AuditApi) -> Router {
    Router::new()
        .route("/api/v1/audit", get(search))
        .route("/api/v1/patients/{id}/access-log", get(access_log))
        .with_state(Arc::new(api))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryOut {
    seq: i64,
    entry_id: Uuid,
    recorded_at: DateTime<Utc>,
    actor: String,
    roles: Vec<String>,
    action: String,
    resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient_id: Option<Uuid>,
    outcome: String,
    /// Operational detail for administrators; a patient's view leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_ip: Option<String>,
}

fn out(e: Entry, operational: bool) -> EntryOut {
    let roles = e.role_names();
    EntryOut {
        seq: e.seq,
        entry_id: e.entry_id,
        recorded_at: e.recorded_at,
        actor: e.actor,
        roles,
        action: e.action,
        resource_type: e.resource_type,
        resource_id: e.resource_id,
        patient_id: e.patient_id,
        outcome: e.outcome,
        request_id: e.request_id.filter(|_| operational),
        source_ip: e.source_ip.filter(|_| operational),
    }
}

fn read_error(e: ReadError) -> Problem {
    match e {
        ReadError::BadCursor => Problem::new(
            StatusCode::BAD_REQUEST,
            "request.invalid_cursor",
            "the cursor is not one this API handed out",
        ),
        ReadError::Db(e) => {
            tracing::error!(error = %e, "audit read failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the audit trail could not be read",
            )
        }
    }
}

fn unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit.unavailable",
        "the audit trail cannot record this access; retry shortly",
    )
}

/// Records `record`, and refuses the request if it cannot be.
async fn note(api: &AuditApi, record: AuditRecord) -> Result<(), Problem> {
    api.trail
        .record(vec![record])
        .await
        .map_err(|_| unavailable())
}

fn record(principal: &Principal, action: AuditAction, resource: &str) -> AuditRecord {
    AuditRecord::by(
        principal,
        &web::request::origin(),
        action,
        resource,
        Utc::now(),
    )
}

fn forbidden() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "auth.forbidden",
        "your roles do not allow this",
    )
}

fn timestamp(v: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| FieldError::new("", "invalid_timestamp", "must be an RFC 3339 timestamp"))
}

async fn search(
    State(api): State<Api>,
    Caller(principal): Caller,
    params: QueryParams,
) -> Result<Response, Problem> {
    if auth::authorize(&principal, Permission::AuditRead).is_err() {
        note(
            &api,
            record(&principal, AuditAction::Access, "AuditLog").outcome(AuditOutcome::Denied),
        )
        .await?;
        return Err(forbidden());
    }
    let params = params.only(&[
        "patientId",
        "actor",
        "action",
        "from",
        "to",
        "limit",
        "cursor",
    ])?;
    let page = page_request(&params)?;
    let mut errors = FieldErrors::new();
    let filter = Filter {
        patient: params.get("patientId").and_then(|v| {
            errors.take(
                "patientId",
                Uuid::parse_str(v)
                    .map_err(|_| FieldError::new("", "invalid_id", "must be a patient id")),
            )
        }),
        actor: params.get("actor").map(str::to_owned),
        action: params.get("action").and_then(|v| {
            errors.take(
                "action",
                AuditAction::parse(v).ok_or_else(|| {
                    FieldError::new("", "invalid_action", "must be an audit action such as READ")
                }),
            )
        }),
        from: params
            .get("from")
            .and_then(|v| errors.take("from", timestamp(v))),
        to: params
            .get("to")
            .and_then(|v| errors.take("to", timestamp(v))),
    };
    if !errors.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "audit.invalid_search",
            "some search parameters are invalid",
        )
        .with_errors(errors.into_vec()));
    }
    let found = api
        .store
        .page(&principal.tenant, &filter, &page)
        .await
        .map_err(read_error)?;
    note(&api, record(&principal, AuditAction::Read, "AuditLog")).await?;
    Ok(axum::Json(PageBody::from_page(found, |e| out(e, true))).into_response())
}

async fn access_log(
    State(api): State<Api>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    params: QueryParams,
) -> Result<Response, Problem> {
    let not_found = || Problem::not_found("patient.not_found", "patient");
    let patient = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let admin = auth::authorize(&principal, Permission::AuditRead).is_ok();
    let own = principal.has_role(Role::Patient) && principal.patient == Some(patient);
    if !admin && !own {
        let denied = record(&principal, AuditAction::Access, "AccessLog")
            .patient(patient)
            .outcome(AuditOutcome::Denied);
        note(&api, denied).await?;
        // Another patient's log is answered as if it did not exist.
        return Err(if principal.has_role(Role::Patient) {
            not_found()
        } else {
            forbidden()
        });
    }
    let page = web::paging_only(params)?;
    let filter = Filter {
        patient: Some(patient),
        ..Filter::default()
    };
    let found = api
        .store
        .page(&principal.tenant, &filter, &page)
        .await
        .map_err(read_error)?;
    note(
        &api,
        record(&principal, AuditAction::Read, "AccessLog").patient(patient),
    )
    .await?;
    Ok(axum::Json(PageBody::from_page(found, |e| out(e, admin))).into_response())
}
