//! Operating the dead-letter queue: list what failed, look at one entry, and replay it once
//! the cause is fixed. A replay appends the original event to its original topic as a new
//! record; the envelope keeps its event id, so consumers that did apply it skip it (inbox)
//! and the one that failed applies it now.

use crate::consumer::DeadLetter;
use crate::embedded::EmbeddedLog;
use crate::{BusError, EventSink, Record};
use events::Topic;
use uuid::Uuid;

/// A DLQ entry and its position in `dlq-events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: i64,
    pub letter: DeadLetter,
}

pub async fn list(log: &EmbeddedLog, from: i64, max: usize) -> Result<Vec<Entry>, BusError> {
    let records = log.records(Topic::DlqEvents.name(), from, max).await?;
    Ok(records
        .into_iter()
        .filter_map(|d| {
            serde_json::from_str(&d.payload).ok().map(|letter| Entry {
                offset: d.offset,
                letter,
            })
        })
        .collect())
}

pub async fn show(log: &EmbeddedLog, offset: i64) -> Result<Option<Entry>, BusError> {
    Ok(list(log, offset, 1)
        .await?
        .into_iter()
        .find(|e| e.offset == offset))
}

/// Puts the event of DLQ entry `offset` back on its topic. `None` when there is no such entry.
pub async fn replay(log: &EmbeddedLog, offset: i64) -> Result<Option<Entry>, BusError> {
    let Some(entry) = show(log, offset).await? else {
        return Ok(None);
    };
    let record = Record {
        topic: entry.letter.original_topic.clone(),
        key: entry.letter.original_key.clone(),
        event_id: Uuid::now_v7(),
        payload: entry.letter.payload.clone(),
    };
    log.publish(std::slice::from_ref(&record)).await?;
    tracing::info!(dlq_offset = offset, topic = %record.topic, "dead letter replayed");
    Ok(Some(entry))
}
