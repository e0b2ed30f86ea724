use crate::{Role, TenantId};
use uuid::Uuid;

/// Who is asking, as their access token says. Every use case takes one.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub`: a user or service-account id at the issuer. Not PHI.
    pub subject: String,
    pub tenant: TenantId,
    pub roles: Vec<Role>,
    /// For PATIENT users: the patient record they are (the `patient_id` claim).
    pub patient: Option<Uuid>,
    /// For clinicians: their provider id (the `provider_id` claim).
    pub provider: Option<String>,
    /// Holds the `LAB_SUPERVISOR` role: may verify lab results.
    pub supervisor: bool,
}

impl Principal {
    /// The hub itself, acting on events rather than for a user (consumers, the relay).
    pub fn system(tenant: TenantId) -> Self {
        Self {
            subject: "system".to_owned(),
            tenant,
            roles: Vec::new(),
            patient: None,
            provider: None,
            supervisor: false,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
