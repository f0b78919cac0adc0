//! The one list envelope: `{"data": [...], "next_cursor": "…" | null}`.

use serde::Serialize;
use utoipa::ToSchema;

/// A list, or one page of it. Pass `next_cursor` as the `cursor` query parameter for the
/// next page; it is `null` on the last page (and on lists that are never paged).
#[derive(Serialize, ToSchema)]
pub(crate) struct List<T: ToSchema> {
    /// The items.
    pub data: Vec<T>,
    /// Cursor of the next page; `null` when there is none.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> List<T> {
    /// A complete list (not paged).
    pub(crate) fn all(data: Vec<T>) -> Self {
        Self {
            data,
            next_cursor: None,
        }
    }

    /// A page of at most `limit` items: a full page names its last item's cursor.
    pub(crate) fn page(data: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let full = i64::try_from(data.len()).is_ok_and(|n| n >= limit);
        let next_cursor = data.last().filter(|_| full).map(cursor);
        Self { data, next_cursor }
    }
}
