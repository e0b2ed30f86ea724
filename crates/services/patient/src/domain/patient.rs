//! The patient aggregate.

use super::address::{AddressInput, check_single_primary};
use super::contact::{Email, Gender, Phone};
use super::identifiers::{DateOfBirth, Mrn, Ssn};
use super::insurance::InsuranceInput;
use super::{Address, Insurance, PersonName};
use chrono::{DateTime, NaiveDate, Utc};
use kernel::ids::PatientId;
use kernel::{FieldError, FieldErrors, TenantId};

pub const MAX_ADDRESSES: usize = 10;
pub const MAX_INSURANCE: usize = 10;

/// Everything a client states about a patient: the body of a registration or a full update.
#[derive(Debug, Clone, PartialEq)]
pub struct Demographics {
    /// `None` on registration means "generate one".
    pub mrn: Option<Mrn>,
    pub ssn: Option<Ssn>,
    pub name: PersonName,
    pub date_of_birth: DateOfBirth,
    pub gender: Option<Gender>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub addresses: Vec<Address>,
    pub insurance: Vec<Insurance>,
}

#[derive(Debug, Default)]
pub struct DemographicsInput<'a> {
    pub mrn: Option<&'a str>,
    pub ssn: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub middle_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub date_of_birth: Option<&'a str>,
    pub gender: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub email: Option<&'a str>,
    pub addresses: Vec<AddressInput<'a>>,
    pub insurance: Vec<InsuranceInput<'a>>,
}

/// Optional fields: absent, null and "" all mean "not given".
fn given(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

impl Demographics {
    /// Checks the whole input and reports every problem at once.
    pub fn parse(input: &DemographicsInput<'_>, today: NaiveDate) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let mrn = errors.take("mrn", given(input.mrn).map(Mrn::parse).transpose());
        let ssn = errors.take("ssn", given(input.ssn).map(Ssn::parse).transpose());
        let name = match PersonName::parse(input.first_name, input.middle_name, input.last_name) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.extend("", e);
                None
            }
        };
        let date_of_birth = errors.take(
            "dateOfBirth",
            super::text::present(input.date_of_birth).and_then(|d| DateOfBirth::parse(d, today)),
        );
        let gender = errors.take("gender", given(input.gender).map(Gender::parse).transpose());
        let phone = errors.take("phone", given(input.phone).map(Phone::parse).transpose());
        let email = errors.take("email", given(input.email).map(Email::parse).transpose());
        let addresses = parse_list(
            &mut errors,
            "addresses",
            &input.addresses,
            MAX_ADDRESSES,
            Address::parse,
        );
        let insurance = parse_list(
            &mut errors,
            "insurance",
            &input.insurance,
            MAX_INSURANCE,
            Insurance::parse,
        );
        if let Some(a) = &addresses {
            errors.take(
                "addresses",
                check_single_primary(a.iter().map(Address::is_primary)),
            );
        }
        if let Some(i) = &insurance {
            errors.take(
                "insurance",
                check_single_primary(i.iter().map(Insurance::is_primary)),
            );
        }
        errors.finish(|| {
            Some(Self {
                mrn: mrn?,
                ssn: ssn?,
                name: name?,
                date_of_birth: date_of_birth?,
                gender: gender?,
                phone: phone?,
                email: email?,
                addresses: addresses?,
                insurance: insurance?,
            })
        })
    }
}

fn parse_list<I, T>(
    errors: &mut FieldErrors,
    field: &str,
    items: &[I],
    max: usize,
    parse: impl Fn(&I) -> Result<T, Vec<FieldError>>,
) -> Option<Vec<T>> {
    if items.len() > max {
        errors.push(FieldError::new(
            field,
            "too_many",
            format!("at most {max} entries"),
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(v) => out.push(v),
            Err(e) => errors.extend(&format!("{field}[{i}]"), e),
        }
    }
    (out.len() == items.len()).then_some(out)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    pub id: PatientId,
    pub tenant: TenantId,
    pub mrn: Mrn,
    pub ssn: Option<Ssn>,
    pub name: PersonName,
    pub date_of_birth: DateOfBirth,
    pub gender: Option<Gender>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub addresses: Vec<Address>,
    pub insurance: Vec<Insurance>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviseError {
    #[error("the MRN of a patient cannot be changed")]
    MrnImmutable,
}

impl Patient {
    pub fn register(
        id: PatientId,
        tenant: TenantId,
        mrn: Mrn,
        d: Demographics,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            tenant,
            mrn,
            ssn: d.ssn,
            name: d.name,
            date_of_birth: d.date_of_birth,
            gender: d.gender,
            phone: d.phone,
            email: d.email,
            addresses: d.addresses,
            insurance: d.insurance,
            version: 1,
            created_at: now,
            updated_at: now,
            created_by: actor.to_owned(),
            updated_by: actor.to_owned(),
        }
    }

    /// The fields a patient may change on their own record (000 §5.1: "update personal
    /// information"): how to reach them, not who they are or how they are insured.
    pub const CONTACT_FIELDS: [&'static str; 3] = ["phone", "email", "addresses"];

    /// Applies a full update. Returns the names of the fields that changed; when none did,
    /// the patient is left exactly as it was (same version), so repeating a PUT is harmless.
    pub fn revise(
        &mut self,
        d: Demographics,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<&'static str>, ReviseError> {
        if d.mrn.as_ref().is_some_and(|m| *m != self.mrn) {
            return Err(ReviseError::MrnImmutable);
        }
        let mut changed = Vec::new();
        macro_rules! set {
            ($field:ident, $name:literal) => {
                if self.$field != d.$field {
                    self.$field = d.$field;
                    changed.push($name);
                }
            };
        }
        set!(ssn, "ssn");
        if self.name.first() != d.name.first() {
            changed.push("firstName");
        }
        if self.name.middle() != d.name.middle() {
            changed.push("middleName");
        }
        if self.name.last() != d.name.last() {
            changed.push("lastName");
        }
        self.name = d.name;
        set!(date_of_birth, "dateOfBirth");
        set!(gender, "gender");
        set!(phone, "phone");
        set!(email, "email");
        set!(addresses, "addresses");
        set!(insurance, "insurance");
        if !changed.is_empty() {
            self.version += 1;
            self.updated_at = now;
            self.updated_by = actor.to_owned();
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
    }

    fn input() -> DemographicsInput<'static> {
        DemographicsInput {
            first_name: Some("Testy"),
            last_name: Some("Synthetic"),
            date_of_birth: Some("1980-02-29"),
            ..Default::default()
        }
    }

    fn patient() -> Patient {
        let d = Demographics::parse(&input(), today()).unwrap();
        Patient::register(
            PatientId::new(),
            TenantId::parse("t").unwrap(),
            Mrn::generated(1),
            d,
            "u",
            Utc::now(),
        )
    }

    #[test]
    fn optional_fields_may_be_empty_strings() {
        let d = Demographics::parse(
            &DemographicsInput {
                ssn: Some(""),
                email: Some(" "),
                ..input()
            },
            today(),
        )
        .unwrap();
        assert_eq!((d.ssn, d.email), (None, None));
    }

    #[test]
    fn every_invalid_field_is_reported_with_its_path() {
        let bad = DemographicsInput {
            first_name: None,
            date_of_birth: Some("2999-01-01"),
            ssn: Some("666-12-3456"),
            addresses: vec![AddressInput {
                zip_code: Some("x"),
                ..Default::default()
            }],
            ..input()
        };
        let fields: Vec<_> = Demographics::parse(&bad, today())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "ssn",
                "firstName",
                "dateOfBirth",
                "addresses[0].addressType",
                "addresses[0].streetLine1",
                "addresses[0].city",
                "addresses[0].state",
                "addresses[0].zipCode"
            ]
        );
    }

    #[test]
    fn a_new_patient_starts_at_version_one() {
        assert_eq!(patient().version, 1);
    }

    #[test]
    fn an_update_that_changes_nothing_keeps_the_version() {
        let mut p = patient();
        let same = Demographics::parse(&input(), today()).unwrap();
        assert_eq!(
            p.revise(same, "u2", Utc::now()).unwrap(),
            Vec::<&str>::new()
        );
        assert_eq!((p.version, p.updated_by.as_str()), (1, "u"));
    }

    #[test]
    fn an_update_names_what_changed_and_bumps_the_version() {
        let mut p = patient();
        let d = Demographics::parse(
            &DemographicsInput {
                last_name: Some("Other"),
                phone: Some("5552345678"),
                ..input()
            },
            today(),
        )
        .unwrap();
        assert_eq!(
            p.revise(d, "u2", Utc::now()).unwrap(),
            vec!["lastName", "phone"]
        );
        assert_eq!(p.version, 2);
    }

    #[test]
    fn the_mrn_cannot_change() {
        let mut p = patient();
        let d = Demographics::parse(
            &DemographicsInput {
                mrn: Some("OTHER-1"),
                ..input()
            },
            today(),
        )
        .unwrap();
        assert_eq!(p.revise(d, "u", Utc::now()), Err(ReviseError::MrnImmutable));
        let d = Demographics::parse(
            &DemographicsInput {
                mrn: Some("mrn000000001"),
                ..input()
            },
            today(),
        )
        .unwrap();
        assert!(p.revise(d, "u", Utc::now()).is_ok());
    }
}
