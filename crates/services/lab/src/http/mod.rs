//! Thin handlers for `/api/v1/lab` (000 §2.1.2): parse the request into domain types, call
//! the use case, map the result.

mod dto;

use crate::app::{Context, LabService};
use crate::domain::{
    AbnormalFlag, LabOrder, NewLabOrder, OrderStatus, Specimen, SpecimenType, SubmittedResult,
};
use crate::store::SqlLabStore;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dto::*;
use kernel::ids::{LabOrderId, PatientId};
use kernel::lab_request::LabOrderRequest;
use kernel::{FieldError, FieldErrors, text};
use std::sync::Arc;
use uuid::Uuid;
use web::preconditions::etag;
use web::{ApiJson, Caller, PageBody, Problem, QueryParams, paging_only};

pub type Service = Arc<LabService<SqlLabStore>>;

pub const BASE: &str = "/api/v1/lab";
const MAX_RESULTS: usize = 200;

pub fn router(service: Service) -> Router {
    Router::new()
        .route(&format!("{BASE}/orders"), post(create))
        .route(&format!("{BASE}/orders/pending"), get(pending))
        .route(&format!("{BASE}/orders/{{id}}"), get(read))
        .route(&format!("{BASE}/orders/{{id}}/status"), put(status))
        .route(&format!("{BASE}/orders/{{id}}/cancel"), post(cancel))
        .route(&format!("{BASE}/orders/{{id}}/specimens"), post(collect))
        .route(
            &format!("{BASE}/orders/{{id}}/specimens/{{sid}}/receipt"),
            post(receive),
        )
        .route(
            &format!("{BASE}/orders/{{id}}/specimens/{{sid}}/condition"),
            put(condition),
        )
        .route(&format!("{BASE}/results"), post(submit_results))
        .route(&format!("{BASE}/results/unmatched"), get(unmatched))
        .route(
            &format!("{BASE}/results/unmatched/{{id}}/reconcile"),
            post(reconcile),
        )
        .route(&format!("{BASE}/messages"), get(messages))
        .route(&format!("{BASE}/messages/{{id}}"), get(message))
        .route(&format!("{BASE}/results/{{id}}"), get(results))
        .route(&format!("{BASE}/results/{{id}}/verify"), post(verify))
        .with_state(service)
}

fn context(Caller(principal): Caller) -> Context {
    Context {
        principal,
        correlation_id: web::request::correlation_id(),
        origin: web::request::origin(),
    }
}

/// An id that cannot exist is simply not found, like one that does not.
fn order_id(raw: &str) -> Result<LabOrderId, Problem> {
    raw.parse()
        .map_err(|_| Problem::not_found("lab.order_not_found", "lab order"))
}

fn specimen_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse()
        .map_err(|_| Problem::not_found("lab.specimen_not_found", "specimen"))
}

fn operation<E: kernel::OperationError>(e: E) -> Problem {
    Problem::from_operation(&e)
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    Ok(web::preconditions::if_match(headers, "lab.version_mismatch")?.flatten())
}

fn with_etag(status: StatusCode, body: impl serde::Serialize, version: i64) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn order_answer(status: StatusCode, o: &LabOrder) -> Response {
    with_etag(status, OrderOut::from(o), o.version)
}

async fn create(
    State(service): State<Service>,
    caller: Caller,
    ApiJson(body): ApiJson<OrderIn>,
) -> Result<Response, Problem> {
    let mut errors = FieldErrors::new();
    let patient_id = errors.take(
        "patientId",
        text::present(body.patient_id.as_deref()).and_then(|v| {
            v.trim()
                .parse::<PatientId>()
                .map_err(|_| FieldError::new("", "invalid_id", "must be a patient id (a UUID)"))
        }),
    );
    let mrn = errors.take("mrn", text::optional(body.mrn.as_deref(), 20));
    let request = match LabOrderRequest::parse(&body.request()) {
        Ok(r) => Some(r),
        Err(e) => {
            for f in e {
                errors.push(f);
            }
            None
        }
    };
    let new = errors
        .finish(|| {
            Some(NewLabOrder {
                patient_id: patient_id?,
                mrn: mrn?,
                request: request?,
                requires_preauthorization: body.requires_preauthorization,
            })
        })
        .map_err(Problem::validation)?;
    let order = service
        .create_order(&context(caller), new)
        .await
        .map_err(operation)?;
    let mut response = order_answer(StatusCode::CREATED, &order);
    if let Ok(v) = HeaderValue::from_str(&format!("{BASE}/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn read(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let order = service
        .order(&context(caller), order_id(&id)?)
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::OK, &order))
}

async fn pending(
    State(service): State<Service>,
    caller: Caller,
    params: QueryParams,
) -> Result<Response, Problem> {
    let page = paging_only(params)?;
    let orders = service
        .pending(&context(caller), &page)
        .await
        .map_err(operation)?;
    Ok(axum::Json(PageBody::from_page(orders, |o| OrderOut::listed(&o))).into_response())
}

async fn status(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StatusIn>,
) -> Result<Response, Problem> {
    let to = text::present(body.status.as_deref())
        .and_then(|s| {
            OrderStatus::parse(s.trim()).ok_or_else(|| {
                FieldError::new(
                    "",
                    "invalid_status",
                    "must be COLLECTED, IN_PROGRESS or COMPLETED (cancel with POST …/cancel)",
                )
            })
        })
        .map_err(|e| Problem::validation(vec![e.within("status")]))?;
    let order = service
        .advance(&context(caller), order_id(&id)?, to, if_match(&headers)?)
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::OK, &order))
}

async fn cancel(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: web::Body,
) -> Result<Response, Problem> {
    let body: CancelIn = if body.0.is_empty() {
        CancelIn::default()
    } else {
        web::json::parse(&body.0)?
    };
    let reason = text::optional(body.reason.as_deref(), 255)
        .map_err(|e| Problem::validation(vec![e.within("reason")]))?;
    let order = service
        .cancel(
            &context(caller),
            order_id(&id)?,
            reason,
            if_match(&headers)?,
        )
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::OK, &order))
}

async fn collect(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SpecimenIn>,
) -> Result<Response, Problem> {
    let now = service.now();
    let mut errors = FieldErrors::new();
    let kind = errors.take(
        "specimenType",
        text::present(body.specimen_type.as_deref()).and_then(|v| {
            SpecimenType::parse(v).ok_or_else(|| {
                FieldError::new(
                    "",
                    "invalid_value",
                    "must be BLOOD, URINE, TISSUE, SWAB or OTHER",
                )
            })
        }),
    );
    let at = errors.take(
        "collectedAt",
        body.collected_at
            .as_deref()
            .map_or(Ok(now), |t| text::timestamp(t, now)),
    );
    let by = errors.take(
        "collectedBy",
        text::optional(body.collected_by.as_deref(), 100),
    );
    let ctx = context(caller);
    let specimen = errors
        .finish(|| {
            Some(Specimen {
                id: Uuid::now_v7(),
                specimen_type: kind?,
                collected_at: at?,
                collected_by: by?.unwrap_or_else(|| ctx.principal.subject.clone()),
                received_at: None,
                condition: None,
            })
        })
        .map_err(Problem::validation)?;
    let order = service
        .collect(&ctx, order_id(&id)?, specimen)
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::CREATED, &order))
}

async fn receive(
    State(service): State<Service>,
    caller: Caller,
    Path((id, sid)): Path<(String, String)>,
    body: web::Body,
) -> Result<Response, Problem> {
    let body: ReceiptIn = if body.0.is_empty() {
        ReceiptIn::default()
    } else {
        web::json::parse(&body.0)?
    };
    let now = service.now();
    let mut errors = FieldErrors::new();
    let at = errors.take(
        "receivedAt",
        body.received_at
            .as_deref()
            .map(|t| text::timestamp(t, now))
            .transpose(),
    );
    let condition = errors.take("condition", text::optional(body.condition.as_deref(), 50));
    let (at, condition) = errors
        .finish(|| Some((at?, condition?)))
        .map_err(Problem::validation)?;
    let order = service
        .receive(
            &context(caller),
            order_id(&id)?,
            specimen_id(&sid)?,
            at,
            condition,
        )
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::OK, &order))
}

async fn condition(
    State(service): State<Service>,
    caller: Caller,
    Path((id, sid)): Path<(String, String)>,
    ApiJson(body): ApiJson<ConditionIn>,
) -> Result<Response, Problem> {
    let condition = text::present(body.condition.as_deref())
        .and_then(|c| text::required(c, 50))
        .map_err(|e| Problem::validation(vec![e.within("condition")]))?;
    let order = service
        .note_condition(
            &context(caller),
            order_id(&id)?,
            specimen_id(&sid)?,
            condition,
        )
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::OK, &order))
}

async fn submit_results(
    State(service): State<Service>,
    caller: Caller,
    ApiJson(body): ApiJson<ResultsIn>,
) -> Result<Response, Problem> {
    let now = service.now();
    let ctx = context(caller);
    let mut errors = FieldErrors::new();
    let order = errors.take(
        "orderId",
        text::present(body.order_id.as_deref()).and_then(|v| {
            v.trim()
                .parse::<LabOrderId>()
                .map_err(|_| FieldError::new("", "invalid_id", "must be a lab order id (a UUID)"))
        }),
    );
    if body.results.is_empty() {
        errors.push(FieldError::new(
            "results",
            "required",
            "at least one result is required",
        ));
    } else if body.results.len() > MAX_RESULTS {
        errors.push(FieldError::new(
            "results",
            "too_many",
            format!("at most {MAX_RESULTS} results"),
        ));
    }
    let mut results = Vec::new();
    for (i, r) in body.results.iter().enumerate().take(MAX_RESULTS) {
        let at = |f: &str| format!("results[{i}].{f}");
        let code = errors.take(
            &at("testCode"),
            text::present(r.test_code.as_deref()).and_then(|v| text::code(v, 50)),
        );
        let value = errors.take(
            &at("value"),
            text::present(r.value.as_deref()).and_then(|v| text::required(v, 500)),
        );
        let unit = errors.take(&at("unit"), text::optional(r.unit.as_deref(), 50));
        let range = errors.take(
            &at("referenceRange"),
            text::optional(r.reference_range.as_deref(), 100),
        );
        let flag = errors.take(
            &at("abnormalFlag"),
            r.abnormal_flag
                .as_deref()
                .map(|f| {
                    AbnormalFlag::parse(f).ok_or_else(|| {
                        FieldError::new("", "invalid_value", "must be L, H, LL, HH, N or A")
                    })
                })
                .transpose(),
        );
        let performed = errors.take(
            &at("performedAt"),
            r.performed_at
                .as_deref()
                .map_or(Ok(now), |t| text::timestamp(t, now)),
        );
        if let (
            Some(test_code),
            Some(value),
            Some(unit),
            Some(reference_range),
            Some(abnormal_flag),
            Some(performed_at),
        ) = (code, value, unit, range, flag, performed)
        {
            results.push(SubmittedResult {
                test_code,
                value,
                unit,
                reference_range,
                abnormal_flag,
                performed_by: ctx.principal.subject.clone(),
                performed_at,
            });
        }
    }
    let order = errors.finish(|| order).map_err(Problem::validation)?;
    let order = service
        .submit_results(&ctx, order, results)
        .await
        .map_err(operation)?;
    Ok(with_etag(
        StatusCode::OK,
        ResultsOut::from(&order),
        order.version,
    ))
}

async fn unmatched(
    State(service): State<Service>,
    caller: Caller,
    params: QueryParams,
) -> Result<Response, Problem> {
    let page = paging_only(params)?;
    let found = service
        .unmatched(&context(caller), &page)
        .await
        .map_err(operation)?;
    Ok(axum::Json(PageBody::from_page(found, |u| UnmatchedOut::from(&u))).into_response())
}

async fn reconcile(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReconcileIn>,
) -> Result<Response, Problem> {
    let id: Uuid = id
        .parse()
        .map_err(|_| Problem::not_found("lab.unmatched_not_found", "unmatched result"))?;
    let order = text::present(body.order_id.as_deref())
        .and_then(|v| {
            v.trim()
                .parse::<LabOrderId>()
                .map_err(|_| FieldError::new("", "invalid_id", "must be a lab order id (a UUID)"))
        })
        .map_err(|e| Problem::validation(vec![e.within("orderId")]))?;
    let order = service
        .reconcile(&context(caller), id, order)
        .await
        .map_err(operation)?;
    Ok(order_answer(StatusCode::OK, &order))
}

async fn messages(
    State(service): State<Service>,
    caller: Caller,
    params: QueryParams,
) -> Result<Response, Problem> {
    let page = paging_only(params)?;
    let found = service
        .messages(&context(caller), &page)
        .await
        .map_err(operation)?;
    Ok(axum::Json(PageBody::from_page(found, MessageOut::from)).into_response())
}

async fn message(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let not_found = || Problem::not_found("lab.message_not_found", "HL7 message");
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let found = service
        .message(&context(caller), id)
        .await
        .map_err(operation)?
        .ok_or_else(not_found)?;
    Ok(axum::Json(MessageOut::from(found)).into_response())
}

async fn results(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let order = service
        .results(&context(caller), order_id(&id)?)
        .await
        .map_err(operation)?;
    Ok(with_etag(
        StatusCode::OK,
        ResultsOut::from(&order),
        order.version,
    ))
}

async fn verify(
    State(service): State<Service>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let order = service
        .verify(&context(caller), order_id(&id)?, if_match(&headers)?)
        .await
        .map_err(operation)?;
    Ok(with_etag(
        StatusCode::OK,
        ResultsOut::from(&order),
        order.version,
    ))
}
