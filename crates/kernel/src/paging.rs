//! Cursor pagination, the same shape everywhere: `{"items": [...], "nextCursor": ...}`.
//!
//! A cursor is opaque to clients: base64url of a small JSON value the store chose.
//! Stores put keys in it, never PHI, because cursors travel in URLs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageRequestError {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    Limit,
    #[error("cursor is not one this API handed out")]
    Cursor,
}

impl PageRequest {
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, PageRequestError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or(PageRequestError::Limit)?,
        };
        let cursor = match cursor {
            None | Some("") => None,
            Some(s) => Some(Cursor::parse(s).ok_or(PageRequestError::Cursor)?),
        };
        Ok(Self { limit, cursor })
    }

    /// Decodes the cursor into the key type the store put in it.
    pub fn position<K: DeserializeOwned>(&self) -> Result<Option<K>, PageRequestError> {
        self.cursor
            .as_ref()
            .map(|c| serde_json::from_slice(&c.0).map_err(|_| PageRequestError::Cursor))
            .transpose()
    }

    /// How many rows to fetch: one more than the page, to learn whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<u8>);

impl Cursor {
    pub fn from_key<K: Serialize>(key: &K) -> Self {
        Self(serde_json::to_vec(key).unwrap_or_default())
    }

    fn parse(s: &str) -> Option<Self> {
        URL_SAFE_NO_PAD.decode(s).ok().map(Self)
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from `fetch_limit()` rows: the extra row, if any, only says a next page
    /// exists, and the cursor points after the last row shown.
    pub fn from_rows<K: Serialize>(
        mut rows: Vec<T>,
        request: &PageRequest,
        key: impl Fn(&T) -> K,
    ) -> Self {
        let limit = request.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::from_key(&key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_max_are_rejected() {
        assert_eq!(
            PageRequest::parse(None, None).map(|p| p.limit),
            Ok(DEFAULT_LIMIT)
        );
        assert_eq!(
            PageRequest::parse(Some("0"), None),
            Err(PageRequestError::Limit)
        );
        assert_eq!(
            PageRequest::parse(Some("101"), None),
            Err(PageRequestError::Limit)
        );
        assert_eq!(
            PageRequest::parse(Some("x"), None),
            Err(PageRequestError::Limit)
        );
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let c = Cursor::from_key(&("2026-01-01", 7));
        let p = PageRequest::parse(None, Some(&c.encode())).unwrap();
        assert_eq!(
            p.position::<(String, i32)>().unwrap(),
            Some(("2026-01-01".to_owned(), 7))
        );
        assert_eq!(
            PageRequest::parse(None, Some("!!")),
            Err(PageRequestError::Cursor)
        );
        let p = PageRequest::parse(None, Some("bm90IGpzb24")).unwrap();
        assert_eq!(p.position::<(String, i32)>(), Err(PageRequestError::Cursor));
    }

    #[test]
    fn a_full_page_has_a_cursor_and_a_short_one_does_not() {
        let req = PageRequest {
            limit: 2,
            cursor: None,
        };
        let page = Page::from_rows(vec![1, 2, 3], &req, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor, Some(Cursor::from_key(&2)));
        let page = Page::from_rows(vec![1, 2], &req, |n| *n);
        assert_eq!(page.next_cursor, None);
    }
}
