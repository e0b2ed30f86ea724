//! Accounts of the built-in issuer: people who log in with a password, and service
//! accounts (an LIS bridge, a batch job) that use the client-credentials grant.

use kernel::role::SUPERVISOR_ROLE;
use kernel::{Role, TenantId};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Person,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "person" => Some(Kind::Person),
            "service" => Some(Kind::Service),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub tenant: TenantId,
    pub kind: Kind,
    /// Realm role names as tokens carry them: the roles of 000 §5.1 and `LAB_SUPERVISOR`.
    pub roles: Vec<String>,
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<String>,
    pub disabled: bool,
}

/// What `meditrack users add` asks for, checked.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub tenant: TenantId,
    pub kind: Kind,
    pub roles: Vec<String>,
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<String>,
}

impl NewUser {
    pub fn parse(
        username: &str,
        tenant: &str,
        kind: Kind,
        roles: &[String],
        patient_id: Option<&str>,
        provider_id: Option<&str>,
    ) -> Result<Self, String> {
        let username = username.trim();
        let valid_name = (3..=100).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !valid_name {
            return Err("a user name is 3 to 100 letters, digits, '.', '_', '@' or '-'".to_owned());
        }
        let tenant = TenantId::parse(tenant).map_err(|e| format!("tenant: {e}"))?;
        let mut checked = Vec::new();
        for role in roles.iter().flat_map(|r| r.split(',')).map(str::trim) {
            if role.is_empty() {
                continue;
            }
            if Role::parse(role).is_none() && role != SUPERVISOR_ROLE {
                let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                return Err(format!(
                    "unknown role '{role}'; known: {}, {SUPERVISOR_ROLE}",
                    known.join(", ")
                ));
            }
            if !checked.iter().any(|r| r == role) {
                checked.push(role.to_owned());
            }
        }
        if checked.is_empty() {
            return Err("give the user at least one role (--role DOCTOR)".to_owned());
        }
        let patient_id = patient_id
            .map(|p| Uuid::parse_str(p).map_err(|_| "patient id: not a UUID".to_owned()))
            .transpose()?;
        let is_patient = checked.iter().any(|r| r == Role::Patient.name());
        if is_patient && patient_id.is_none() {
            return Err(
                "a PATIENT user needs --patient-id: the patient record they are".to_owned(),
            );
        }
        if !is_patient && patient_id.is_some() {
            return Err("--patient-id is for PATIENT users".to_owned());
        }
        let provider_id = provider_id.map(str::trim).filter(|p| !p.is_empty());
        if provider_id.is_some_and(|p| p.len() > 50) {
            return Err("provider id: at most 50 characters".to_owned());
        }
        Ok(Self {
            username: username.to_owned(),
            tenant,
            kind,
            roles: checked,
            patient_id,
            provider_id: provider_id.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn users_are_checked_before_they_exist() {
        let ok = NewUser::parse(
            "dr.demo",
            "clinic-1",
            Kind::Person,
            &roles(&["DOCTOR,NURSE", "DOCTOR"]),
            None,
            Some("DOC-1"),
        )
        .unwrap();
        assert_eq!(ok.roles, roles(&["DOCTOR", "NURSE"]));
        let err = |r: Result<NewUser, String>| r.unwrap_err();
        let p = |u: &str, r: &[&str], pid: Option<&str>| {
            NewUser::parse(u, "clinic-1", Kind::Person, &roles(r), pid, None)
        };
        assert!(err(p("x", &["DOCTOR"], None)).contains("user name"));
        assert!(err(p("dr.demo", &["SURGEON"], None)).contains("unknown role 'SURGEON'"));
        assert!(err(p("dr.demo", &[], None)).contains("at least one role"));
        assert!(err(p("pat", &["PATIENT"], None)).contains("--patient-id"));
        assert!(err(p("pat", &["PATIENT"], Some("nope"))).contains("UUID"));
        assert!(
            err(p(
                "dr.demo",
                &["DOCTOR"],
                Some("0190a000-0000-7000-8000-000000000001")
            ))
            .contains("for PATIENT")
        );
        assert!(p("lead", &["LAB_TECHNICIAN", "LAB_SUPERVISOR"], None).is_ok());
    }
}
