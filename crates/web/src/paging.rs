use crate::Problem;
use crate::query::QueryParams;
use axum::http::StatusCode;
use kernel::FieldError;
use kernel::paging::{Page, PageRequest, PageRequestError};
use serde::Serialize;

/// The list shape of every MediTrack API: `{"items": [...], "nextCursor": "..." | null}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageBody<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> PageBody<T> {
    pub fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        let page = page.map(f);
        Self {
            items: page.items,
            next_cursor: page.next_cursor.map(|c| c.encode()),
        }
    }
}

/// A plain list's query: `limit` and `cursor`, and no other parameter.
pub fn paging_only(params: QueryParams) -> Result<PageRequest, Problem> {
    page_request(&params.only(&["limit", "cursor"])?)
}

/// `limit` and `cursor` from the query string.
pub fn page_request(params: &QueryParams) -> Result<PageRequest, Problem> {
    PageRequest::parse(params.get("limit"), params.get("cursor")).map_err(|e| {
        let (field, code) = match e {
            PageRequestError::Limit => ("limit", "out_of_range"),
            PageRequestError::Cursor => ("cursor", "invalid_cursor"),
        };
        Problem::new(
            StatusCode::BAD_REQUEST,
            "request.invalid_paging",
            e.to_string(),
        )
        .with_errors(vec![FieldError::new(field, code, e.to_string())])
    })
}
