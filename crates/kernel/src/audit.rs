//! What the audit trail records (000 §2.2.2, §5.3): who did what to which record, from
//! where, with what outcome. Use cases depend on this port; the audit service implements
//! it. An access the trail could not record is not answered ([`AuditUnavailable`]).

use crate::{Principal, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditAction {
    Read,
    /// One entry per record a search returned.
    Search,
    Create,
    Update,
    Delete,
    Export,
    Login,
    Logout,
    /// A permission check that failed, or a record outside the caller's reach.
    Access,
}

impl AuditAction {
    pub const ALL: [AuditAction; 9] = [
        AuditAction::Read,
        AuditAction::Search,
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::Export,
        AuditAction::Login,
        AuditAction::Logout,
        AuditAction::Access,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Read => "READ",
            AuditAction::Search => "SEARCH",
            AuditAction::Create => "CREATE",
            AuditAction::Update => "UPDATE",
            AuditAction::Delete => "DELETE",
            AuditAction::Export => "EXPORT",
            AuditAction::Login => "LOGIN",
            AuditAction::Logout => "LOGOUT",
            AuditAction::Access => "ACCESS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditOutcome {
    Success,
    Failure,
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "SUCCESS",
            AuditOutcome::Failure => "FAILURE",
            AuditOutcome::Denied => "DENIED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Failure, Self::Denied]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Where a request came from, for the trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// One thing to record. Identifiers only: no names, no values of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub tenant: TenantId,
    /// The token's subject, or the login name tried when there is none.
    pub actor: String,
    pub roles: Vec<String>,
    pub action: AuditAction,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<Uuid>,
    pub outcome: AuditOutcome,
    pub at: DateTime<Utc>,
    pub origin: Origin,
}

impl AuditRecord {
    /// A record of what `principal` did.
    pub fn by(
        principal: &Principal,
        origin: &Origin,
        action: AuditAction,
        resource_type: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            tenant: principal.tenant.clone(),
            actor: principal.subject.clone(),
            roles: principal
                .roles
                .iter()
                .map(|r| r.name().to_owned())
                .collect(),
            action,
            resource_type: resource_type.to_owned(),
            resource_id: None,
            patient_id: None,
            outcome: AuditOutcome::Success,
            at,
            origin: origin.clone(),
        }
    }

    pub fn resource(mut self, id: impl ToString) -> Self {
        self.resource_id = Some(id.to_string());
        self
    }

    pub fn patient(mut self, id: Uuid) -> Self {
        self.patient_id = Some(id);
        self
    }

    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// The trail could not record an access, so the access is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot record this access; retry shortly")]
pub struct AuditUnavailable;

pub type Recorded<'a> = Pin<Box<dyn Future<Output = Result<(), AuditUnavailable>> + Send + 'a>>;

/// Where audit records go. `record` resolves once they are durable.
pub trait AuditTrail: Send + Sync + std::fmt::Debug + 'static {
    fn record(&self, records: Vec<AuditRecord>) -> Recorded<'_>;
}

/// Records nothing: for unit tests and tools that touch no PHI.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditTrail for NoAudit {
    fn record(&self, _: Vec<AuditRecord>) -> Recorded<'_> {
        Box::pin(async { Ok(()) })
    }
}
