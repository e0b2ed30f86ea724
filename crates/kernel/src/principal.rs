use crate::TenantId;

/// Who is asking. Every use case takes one; until authentication lands (issue 5) the
/// web layer builds it from the configured tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub tenant: TenantId,
    pub roles: Vec<String>,
}

impl Principal {
    /// The identity used for requests before authentication exists.
    pub fn anonymous(tenant: TenantId) -> Self {
        Self {
            subject: "anonymous".to_owned(),
            tenant,
            roles: Vec::new(),
        }
    }
}
