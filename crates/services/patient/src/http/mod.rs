//! Thin handlers: parse the request into domain types, call the use case, map the result.

mod dto;

use crate::app::{Context, Discharge, PatientRef, PatientService};
use crate::domain::lab_order::LabOrderRequest;
use crate::domain::medical_record::{NewMedicalRecord, parse_timestamp};
use crate::domain::timeline::DISPOSITIONS;
use crate::domain::{Demographics, Email, Mrn, Patient, Phone, Ssn, identifiers, text};
use crate::store::{SearchCriteria, SqlPatientStore};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dto::*;
use kernel::ids::PatientId;
use kernel::{FieldError, FieldErrors};
use std::sync::Arc;
use web::preconditions::etag;
use web::{ApiJson, Body, Caller, JsonCommand, PageBody, Problem, QueryParams, page_request};

pub type Service = Arc<PatientService<SqlPatientStore>>;

pub const BASE: &str = "/api/v1/patients";

pub fn router(service: Service) -> Router {
    Router::new()
        .route(BASE, post(register))
        .route(&format!("{BASE}/search"), get(search))
        .route(
            &format!("{BASE}/{{id}}"),
            get(read).put(update).delete(delete),
        )
        .route(
            &format!("{BASE}/{{id}}/medical-records"),
            get(list_records).post(add_record),
        )
        .route(&format!("{BASE}/{{id}}/timeline"), get(timeline))
        // `{id}` is a patient id or, as 000 §2.1.1 names the route, an SSN.
        .route(&format!("{BASE}/{{id}}/order-labs"), post(order_labs))
        .route(&format!("{BASE}/{{id}}/discharge"), post(discharge))
        .with_state(service)
}

fn context(Caller(principal): Caller) -> Context {
    Context {
        principal,
        correlation_id: web::request::correlation_id(),
        origin: web::request::origin(),
    }
}

/// An id that cannot exist is simply not found: 404, like an id that does not.
fn patient_id(raw: &str) -> Result<PatientId, Problem> {
    raw.parse()
        .map_err(|_| Problem::not_found("patient.not_found", "patient"))
}

fn if_match(headers: &HeaderMap) -> Result<Option<Option<i64>>, Problem> {
    web::preconditions::if_match(headers, "patient.version_mismatch")
}

fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::validation(errors)
}

fn operation<E: kernel::OperationError>(e: E) -> Problem {
    Problem::from_operation(&e)
}

fn with_etag(status: StatusCode, patient: &Patient) -> Response {
    let mut response = (status, axum::Json(PatientOut::from(patient))).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(patient.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Tells a client that this answer repeats the outcome of its earlier request.
fn mark_replay(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response.headers_mut().insert(
            web::idempotency::REPLAYED_HEADER,
            HeaderValue::from_static("true"),
        );
    }
    response
}

fn demographics(service: &Service, body: &PatientIn) -> Result<Demographics, Problem> {
    Demographics::parse(&body.demographics(), service.today()).map_err(invalid)
}

async fn register(
    State(service): State<Service>,
    caller: Caller,
    JsonCommand {
        body,
        idempotency_key,
    }: JsonCommand<PatientIn>,
) -> Result<Response, Problem> {
    if body.id.is_some() {
        return Err(invalid(vec![FieldError::new(
            "id",
            "read_only",
            "is assigned by the server",
        )]));
    }
    let d = demographics(&service, &body)?;
    let outcome = service
        .register(&context(caller), d, idempotency_key.as_ref())
        .await
        .map_err(operation)?;
    let mut response = with_etag(StatusCode::CREATED, &outcome.value);
    if let Ok(v) = HeaderValue::from_str(&format!("{BASE}/{}", outcome.value.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(mark_replay(response, outcome.replayed))
}

async fn read(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = patient_id(&id)?;
    let patient = service.get(&context(caller), id).await.map_err(operation)?;
    Ok(with_etag(StatusCode::OK, &patient))
}

async fn update(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PatientIn>,
) -> Result<Response, Problem> {
    let id = patient_id(&id)?;
    let expected = if_match(&headers)?.ok_or_else(|| {
        Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "patient.if_match_required",
            "send If-Match with the ETag of the patient you read, so concurrent updates are not lost",
        )
    })?;
    if body.id.as_deref().is_some_and(|b| b != id.to_string()) {
        return Err(invalid(vec![FieldError::new(
            "id",
            "id_mismatch",
            "does not match the patient in the path",
        )]));
    }
    let d = demographics(&service, &body)?;
    let patient = service
        .update(&context(caller), id, expected, d)
        .await
        .map_err(operation)?;
    Ok(with_etag(StatusCode::OK, &patient))
}

async fn delete(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let id = patient_id(&id)?;
    let expected = if_match(&headers)?.flatten();
    service
        .delete(&context(caller), id, expected)
        .await
        .map_err(operation)?;
    Ok(StatusCode::NO_CONTENT)
}

const SEARCH_PARAMS: [&str; 8] = [
    "lastName",
    "firstName",
    "dateOfBirth",
    "mrn",
    "phone",
    "email",
    "limit",
    "cursor",
];

async fn search(
    State(service): State<Service>,
    caller: Caller,
    params: QueryParams,
) -> Result<Response, Problem> {
    let params = params.only(&SEARCH_PARAMS)?;
    let page = page_request(&params)?;
    let criteria = search_criteria(&params).map_err(|errors| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "patient.invalid_search",
            "some search parameters are invalid",
        )
        .with_errors(errors)
    })?;
    let found = service
        .search(&context(caller), &criteria, &page)
        .await
        .map_err(operation)?;
    Ok(axum::Json(PageBody::from_page(found, PatientSummaryOut::from)).into_response())
}

fn search_criteria(params: &QueryParams) -> Result<SearchCriteria, Vec<FieldError>> {
    let mut errors = FieldErrors::new();
    let name = |v: &str| text::required(v, crate::domain::name::MAX_NAME);
    let criteria = SearchCriteria {
        last_name: params
            .get("lastName")
            .and_then(|v| errors.take("lastName", name(v))),
        first_name: params
            .get("firstName")
            .and_then(|v| errors.take("firstName", name(v))),
        date_of_birth: params
            .get("dateOfBirth")
            .and_then(|v| errors.take("dateOfBirth", identifiers::parse_date(v))),
        mrn: params
            .get("mrn")
            .and_then(|v| errors.take("mrn", Mrn::parse(v))),
        phone: params
            .get("phone")
            .and_then(|v| errors.take("phone", Phone::parse(v))),
        email: params
            .get("email")
            .and_then(|v| errors.take("email", Email::parse(v))),
        only: None,
    };
    if errors.is_empty() {
        Ok(criteria)
    } else {
        Err(errors.into_vec())
    }
}

async fn list_records(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    params: QueryParams,
) -> Result<Response, Problem> {
    let id = patient_id(&id)?;
    let page = web::paging_only(params)?;
    let records = service
        .medical_records(&context(caller), id, &page)
        .await
        .map_err(operation)?;
    Ok(axum::Json(PageBody::from_page(records, MedicalRecordOut::from)).into_response())
}

async fn add_record(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    JsonCommand {
        body,
        idempotency_key,
    }: JsonCommand<MedicalRecordIn>,
) -> Result<Response, Problem> {
    let id = patient_id(&id)?;
    let record = NewMedicalRecord::parse(&body.input(), service.now()).map_err(invalid)?;
    let outcome = service
        .add_medical_record(&context(caller), id, record, idempotency_key.as_ref())
        .await
        .map_err(operation)?;
    let response = (
        StatusCode::CREATED,
        axum::Json(MedicalRecordOut::from(outcome.value)),
    );
    Ok(mark_replay(response.into_response(), outcome.replayed))
}

async fn timeline(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    params: QueryParams,
) -> Result<Response, Problem> {
    let id = patient_id(&id)?;
    let page = web::paging_only(params)?;
    let entries = service
        .timeline(&context(caller), id, &page)
        .await
        .map_err(operation)?;
    Ok(axum::Json(PageBody::from_page(entries, TimelineEntryOut::from)).into_response())
}

async fn order_labs(
    State(service): State<Service>,
    caller: Caller,
    Path(who): Path<String>,
    JsonCommand {
        body,
        idempotency_key,
    }: JsonCommand<LabOrderIn>,
) -> Result<Response, Problem> {
    // The SSN form never reaches a log: the route is logged as its template.
    let who = if Ssn::looks_like(&who) {
        PatientRef::Ssn(
            Ssn::parse(&who).map_err(|_| Problem::not_found("patient.not_found", "patient"))?,
        )
    } else {
        PatientRef::Id(patient_id(&who)?)
    };
    let request = LabOrderRequest::parse(&body.input()).map_err(invalid)?;
    let outcome = service
        .order_labs(&context(caller), who, request, idempotency_key.as_ref())
        .await
        .map_err(operation)?;
    let response = (
        StatusCode::ACCEPTED,
        axum::Json(LabOrderOut::from(outcome.value)),
    );
    Ok(mark_replay(response.into_response(), outcome.replayed))
}

async fn discharge(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Body(bytes): Body,
) -> Result<Response, Problem> {
    let id = patient_id(&id)?;
    let key = web::idempotency::from_request(&headers, "POST", uri.path(), &bytes)?;
    // The body is optional: an empty POST discharges now with no disposition.
    let body: DischargeIn = if bytes.is_empty() {
        DischargeIn::default()
    } else {
        web::json::parse_with_type(&headers, &bytes)?
    };
    let mut errors = FieldErrors::new();
    let discharged_at = body
        .discharged_at
        .as_deref()
        .and_then(|t| errors.take("dischargedAt", parse_timestamp(t, service.now())));
    let disposition = body
        .disposition
        .as_deref()
        .and_then(|d| errors.take("disposition", text::one_of(d, &DISPOSITIONS)));
    if !errors.is_empty() {
        return Err(invalid(errors.into_vec()));
    }
    let done = service
        .discharge(
            &context(caller),
            id,
            Discharge {
                discharged_at,
                disposition,
            },
            key.as_ref(),
        )
        .await
        .map_err(operation)?;
    Ok(mark_replay(
        axum::Json(DischargedOut::from(done.value)).into_response(),
        done.replayed,
    ))
}
