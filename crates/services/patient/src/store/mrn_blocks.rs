//! Generated MRNs on PostgreSQL, handed out from blocks that the tenant's counter reserves.
//!
//! Taking each MRN from the counter was a transaction of its own per registration, and
//! every registration of a tenant waited its turn for the counter's row lock: about a
//! quarter of the server's time per registration, in a statement log of the POST
//! scenario. A block costs one such transaction per [`BLOCK`] registrations.
//!
//! What a block changes: a process that stops gives the rest of its block back
//! ([`MrnBlocks::give_back`]) when no other process has reserved one since, so a restart
//! leaves no gap; after a crash, or with several processes, the rest stays unused (a gap
//! in the tenant's MRNs, as a registration that fails already leaves one). Processes that
//! share a database hand out MRNs from their own blocks, so MRNs follow each other in the
//! order they were handed out within a process, not across processes. MRNs stay
//! unique: every block is a range no other reservation got, and an MRN a client took
//! itself is still refused by the unique index and passed over.

use kernel::TenantId;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use store::{Db, DbError, Scope};
use tokio::sync::Mutex;

/// How many MRNs a reservation takes.
pub(super) const BLOCK: i64 = 64;

/// Each tenant's reserved MRNs not handed out yet, shared by clones of the store.
#[derive(Debug, Clone, Default)]
pub(super) struct MrnBlocks(Arc<Mutex<HashMap<TenantId, Range<i64>>>>);

impl MrnBlocks {
    /// The tenant's next generated MRN number: from its block, or from a new one. The lock
    /// is held while a block is reserved, so that two registrations that both find the
    /// block empty do not both reserve one.
    pub(super) async fn next(&self, db: &Db, tenant: &TenantId) -> Result<i64, DbError> {
        let mut blocks = self.0.lock().await;
        if let Some(n) = blocks.get_mut(tenant).and_then(Iterator::next) {
            return Ok(n);
        }
        let last = advance(db, tenant, BLOCK).await?;
        let mut block = (last - BLOCK + 1)..(last + 1);
        let n = block
            .next()
            .ok_or(DbError::Invariant("an empty block of MRNs"))?;
        blocks.insert(tenant.clone(), block);
        Ok(n)
    }

    /// Hands each tenant's unused MRNs back to its counter, where the counter is still at
    /// the end of this store's block (no other process reserved one since), for a process
    /// that stops. How many tenants' counters were moved back.
    pub(super) async fn give_back(&self, db: &Db) -> Result<usize, DbError> {
        let mut blocks = self.0.lock().await;
        let mut moved = 0;
        for (tenant, block) in blocks.drain() {
            if block.is_empty() {
                continue;
            }
            let statement = format!(
                "WITH back AS (UPDATE mrn_counters SET last_value = {unused_from} - 1
                 WHERE tenant_id = '{tenant}' AND last_value = {end} - 1 RETURNING 1)
                 SELECT COUNT(*) FROM back",
                unused_from = block.start,
                end = block.end,
                tenant = tenant.as_str()
            );
            let n = db
                .step_unawaited(Scope::Tenant(&tenant), &statement)
                .await?;
            moved += usize::try_from(n).unwrap_or(0);
        }
        Ok(moved)
    }
}

/// Moves the tenant's counter on by `step`; its new value. Here by a block; on SQLite by
/// one, for callers that ask for a single MRN outside a registration.
pub(super) async fn advance(db: &Db, tenant: &TenantId, step: i64) -> Result<i64, DbError> {
    // Committed without waiting for durability: a registration that uses a value it gave
    // waits for its own commit, which cannot be durable before this one; should a crash
    // lose both, a value handed out again is refused by the unique MRN index and
    // registration retries. The tenant id is inlined: it is letters, digits, `-` and `_`
    // (`TenantId::parse`).
    let statement = format!(
        "INSERT INTO mrn_counters (tenant_id, last_value) VALUES ('{tenant}', {step})
         ON CONFLICT (tenant_id) DO UPDATE SET last_value = mrn_counters.last_value + {step}
         RETURNING last_value",
        tenant = tenant.as_str()
    );
    db.step_unawaited(Scope::Tenant(tenant), &statement).await
}
