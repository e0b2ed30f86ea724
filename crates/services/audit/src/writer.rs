//! Group commit: requests hand their records to one writer task, which stores whatever has
//! gathered in one transaction and then answers them all. Concurrent reads therefore share
//! a commit instead of queueing for one each, and no request is answered before its
//! access is durable in the trail.

use crate::store::AuditStore;
use kernel::audit::{AuditRecord, AuditTrail, AuditUnavailable, Recorded};
use tokio::sync::{mpsc, oneshot};

pub const ENTRIES: &str = "meditrack_audit_entries_total";
pub const BATCH_SIZE: &str = "meditrack_audit_batch_size";
pub const FAILURES: &str = "meditrack_audit_write_failures_total";

/// Records per transaction at most.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer at most; more wait to hand theirs over.
const QUEUE: usize = 4096;

struct Pending {
    records: Vec<AuditRecord>,
    done: oneshot::Sender<Result<(), AuditUnavailable>>,
}

/// The trail as use cases see it. Cloning shares the writer.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: AuditStore) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Self { queue }
    }
}

impl AuditTrail for AuditWriter {
    fn record(&self, records: Vec<AuditRecord>) -> Recorded<'_> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let (done, answer) = oneshot::channel();
            self.queue
                .send(Pending { records, done })
                .await
                .map_err(|_| AuditUnavailable)?;
            answer.await.map_err(|_| AuditUnavailable)?
        })
    }
}

async fn run(store: AuditStore, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut size = batch[0].records.len();
        while size < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    size += p.records.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(size);
        let mut answers = Vec::with_capacity(batch.len());
        for p in batch {
            records.extend(p.records);
            answers.push(p.done);
        }
        let mut result = store.append(&records).await;
        if result.is_err() {
            // A lost race or a dropped connection: one more try before refusing the requests.
            result = store.append(&records).await;
        }
        let outcome = match result {
            Ok(_) => {
                metrics::counter!(ENTRIES).increment(records.len() as u64);
                metrics::histogram!(BATCH_SIZE).record(records.len() as f64);
                Ok(())
            }
            Err(e) => {
                metrics::counter!(FAILURES).increment(1);
                tracing::error!(error = %e, entries = records.len(), "audit entries not stored; their requests are refused");
                Err(AuditUnavailable)
            }
        };
        for done in answers {
            let _ = done.send(outcome);
        }
    }
}
