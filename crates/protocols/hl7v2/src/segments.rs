//! Typed views of the segments MediTrack reads, by the field names of the standard (v2.5.1
//! numbering, which 2.3 and 2.4 share for every field used here). Each view borrows its
//! segment; text comes back unescaped, and empty fields as `None`.

use crate::{Segment, Value};

/// CE / CWE: a code, its text and the coding system (`LN` for LOINC). When the first
/// triplet is empty the alternate one (components 4 to 6) is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodedValue {
    pub code: String,
    pub text: Option<String>,
    pub system: Option<String>,
}

impl CodedValue {
    pub fn read(v: Value<'_>) -> Option<Self> {
        let triplet = |first: usize| {
            v.component(first).text().map(|code| CodedValue {
                code,
                text: v.component(first + 1).text(),
                system: v.component(first + 2).text(),
            })
        };
        triplet(1).or_else(|| triplet(4))
    }

    pub fn is_loinc(&self) -> bool {
        self.system.as_deref() == Some("LN")
    }
}

/// CX: an identifier, the authority that assigned it, and its kind (`MR`, `SS`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub id: String,
    pub authority: Option<String>,
    pub kind: Option<String>,
}

impl Identifier {
    pub fn read(v: Value<'_>) -> Option<Self> {
        Some(Identifier {
            id: v.component(1).text()?,
            authority: v.component(4).subcomponent(1).text(),
            kind: v.component(5).text(),
        })
    }
}

/// XPN: family name, given name, middle name or initial.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonName {
    pub family: Option<String>,
    pub given: Option<String>,
    pub middle: Option<String>,
}

impl PersonName {
    pub fn read(v: Value<'_>) -> Self {
        PersonName {
            family: v.component(1).subcomponent(1).text(),
            given: v.component(2).text(),
            middle: v.component(3).text(),
        }
    }
}

/// XCN: a provider's id and name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provider {
    pub id: Option<String>,
    pub family: Option<String>,
    pub given: Option<String>,
}

impl Provider {
    pub fn read(v: Value<'_>) -> Option<Self> {
        let p = Provider {
            id: v.component(1).text(),
            family: v.component(2).subcomponent(1).text(),
            given: v.component(3).text(),
        };
        (p.id.is_some() || p.family.is_some()).then_some(p)
    }

    /// "Given Family", or the id when there is no name.
    pub fn display_name(&self) -> Option<String> {
        let name: Vec<&str> = [self.given.as_deref(), self.family.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if name.is_empty() {
            self.id.clone()
        } else {
            Some(name.join(" "))
        }
    }
}

/// XAD: a postal address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub street: Option<String>,
    pub other: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
}

impl Address {
    pub fn read(v: Value<'_>) -> Option<Self> {
        let a = Address {
            street: v.component(1).subcomponent(1).text(),
            other: v.component(2).text(),
            city: v.component(3).text(),
            state: v.component(4).text(),
            zip: v.component(5).text(),
            country: v.component(6).text(),
        };
        (a != Address::default()).then_some(a)
    }
}

macro_rules! view {
    ($(#[$doc:meta])* $name:ident, $id:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a>(pub &'a Segment);

        impl<'a> $name<'a> {
            pub const ID: &'static str = $id;

            /// The view, when `segment` is one of these.
            pub fn of(segment: &'a Segment) -> Option<Self> {
                (segment.id() == $id).then_some(Self(segment))
            }

            #[allow(dead_code)]
            fn text(&self, field: usize) -> Option<String> {
                self.0.field(field).text()
            }
        }
    };
}

view!(
    /// Message header.
    Msh,
    "MSH"
);
impl Msh<'_> {
    pub fn sending_application(&self) -> Option<String> {
        self.0.field(3).component(1).text()
    }
    pub fn sending_facility(&self) -> Option<String> {
        self.0.field(4).component(1).text()
    }
    pub fn receiving_application(&self) -> Option<String> {
        self.0.field(5).component(1).text()
    }
    pub fn receiving_facility(&self) -> Option<String> {
        self.0.field(6).component(1).text()
    }
    /// MSH-7, as written.
    pub fn timestamp(&self) -> Option<String> {
        self.0.field(7).component(1).text()
    }
    pub fn message_code(&self) -> Option<String> {
        self.0.field(9).component(1).text()
    }
    pub fn trigger_event(&self) -> Option<String> {
        self.0.field(9).component(2).text()
    }
    pub fn control_id(&self) -> Option<String> {
        self.text(10)
    }
    /// MSH-11: `P` production, `T` training, `D` debugging.
    pub fn processing_id(&self) -> Option<String> {
        self.0.field(11).component(1).text()
    }
    pub fn version(&self) -> Option<String> {
        self.0.field(12).component(1).text()
    }
}

view!(
    /// Event type (ADT).
    Evn,
    "EVN"
);
impl Evn<'_> {
    pub fn event_type(&self) -> Option<String> {
        self.text(1)
    }
    pub fn recorded_at(&self) -> Option<String> {
        self.0.field(2).component(1).text()
    }
}

view!(
    /// Patient identification.
    Pid,
    "PID"
);
impl Pid<'_> {
    /// PID-3, every identifier; PID-2 (the external id of v2.3) when PID-3 is empty.
    pub fn identifiers(&self) -> Vec<Identifier> {
        let ids: Vec<Identifier> = self
            .0
            .field(3)
            .repetitions()
            .into_iter()
            .filter_map(Identifier::read)
            .collect();
        if ids.is_empty() {
            Identifier::read(self.0.field(2)).into_iter().collect()
        } else {
            ids
        }
    }
    pub fn name(&self) -> PersonName {
        PersonName::read(self.0.field(5))
    }
    /// PID-7, as written.
    pub fn birth_date(&self) -> Option<String> {
        self.0.field(7).component(1).text()
    }
    /// PID-8: `F`, `M`, `O`, `U`, `A`, `N`.
    pub fn sex(&self) -> Option<String> {
        self.text(8)
    }
    pub fn address(&self) -> Option<Address> {
        Address::read(self.0.field(11))
    }
    pub fn phone(&self) -> Option<String> {
        self.0.field(13).component(1).text()
    }
    /// PID-19 (retained for backward compatibility since 2.3.1; many senders still use it).
    pub fn ssn(&self) -> Option<String> {
        self.text(19)
    }
}

view!(
    /// Patient visit.
    Pv1,
    "PV1"
);
impl Pv1<'_> {
    /// PV1-2: `I` inpatient, `O` outpatient, `E` emergency, …
    pub fn patient_class(&self) -> Option<String> {
        self.text(2)
    }
    pub fn assigned_location(&self) -> Option<String> {
        self.0.field(3).component(1).text()
    }
    pub fn attending_doctor(&self) -> Option<Provider> {
        Provider::read(self.0.field(7))
    }
    pub fn visit_number(&self) -> Option<String> {
        self.0.field(19).component(1).text()
    }
}

view!(
    /// Common order.
    Orc,
    "ORC"
);
impl Orc<'_> {
    /// ORC-1: `NW` new, `CA` cancel, `SC` status changed, `RE` observations to follow, …
    pub fn order_control(&self) -> Option<String> {
        self.text(1)
    }
    pub fn placer_order_number(&self) -> Option<String> {
        self.0.field(2).component(1).text()
    }
    pub fn filler_order_number(&self) -> Option<String> {
        self.0.field(3).component(1).text()
    }
    pub fn order_status(&self) -> Option<String> {
        self.text(5)
    }
    /// ORC-7 (quantity/timing, v2.3 to 2.4): its priority component (`S`, `A`, `R`).
    pub fn priority(&self) -> Option<String> {
        self.0.field(7).component(6).text()
    }
    /// ORC-9, as written.
    pub fn transaction_at(&self) -> Option<String> {
        self.0.field(9).component(1).text()
    }
    pub fn ordering_provider(&self) -> Option<Provider> {
        Provider::read(self.0.field(12))
    }
}

view!(
    /// Observation request.
    Obr,
    "OBR"
);
impl Obr<'_> {
    pub fn placer_order_number(&self) -> Option<String> {
        self.0.field(2).component(1).text()
    }
    pub fn filler_order_number(&self) -> Option<String> {
        self.0.field(3).component(1).text()
    }
    /// OBR-4, the test ordered.
    pub fn universal_service_id(&self) -> Option<CodedValue> {
        CodedValue::read(self.0.field(4))
    }
    /// OBR-5 (priority; `S` stat, `A` as soon as possible, `R` routine) or the priority
    /// component of OBR-27 (quantity/timing, v2.3 to 2.4).
    pub fn priority(&self) -> Option<String> {
        self.text(5)
            .or_else(|| self.0.field(27).component(6).text())
    }
    /// OBR-7, as written.
    pub fn observed_at(&self) -> Option<String> {
        self.0.field(7).component(1).text()
    }
    pub fn ordering_provider(&self) -> Option<Provider> {
        Provider::read(self.0.field(16))
    }
    /// OBR-22, as written.
    pub fn reported_at(&self) -> Option<String> {
        self.0.field(22).component(1).text()
    }
    /// OBR-25: `F` final, `P` preliminary, `C` corrected, `X` cancelled, …
    pub fn result_status(&self) -> Option<String> {
        self.text(25)
    }
}

view!(
    /// Observation or result.
    Obx,
    "OBX"
);
impl Obx<'_> {
    /// OBX-2: `NM` numeric, `ST` string, `TX` text, `CE`/`CWE` coded, `SN` structured numeric, …
    pub fn value_type(&self) -> Option<String> {
        self.text(2)
    }
    pub fn observation_id(&self) -> Option<CodedValue> {
        CodedValue::read(self.0.field(3))
    }
    pub fn sub_id(&self) -> Option<String> {
        self.text(4)
    }
    /// OBX-5 as text: repetitions joined by a line break; a coded value by its text (or
    /// code); a structured numeric (`<^5`, `^10^-^20`) by its parts run together.
    pub fn value(&self) -> Option<String> {
        let value_type = self.value_type().unwrap_or_default();
        let parts: Vec<String> = self
            .0
            .field(5)
            .repetitions()
            .into_iter()
            .filter_map(|r| match value_type.as_str() {
                "CE" | "CWE" | "CNE" => CodedValue::read(r).map(|c| c.text.unwrap_or(c.code)),
                "SN" => {
                    let s: String = (1..=4).filter_map(|i| r.component(i).text()).collect();
                    (!s.is_empty()).then_some(s)
                }
                _ => r.text(),
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }
    pub fn units(&self) -> Option<String> {
        self.0
            .field(6)
            .component(1)
            .text()
            .or_else(|| self.0.field(6).component(2).text())
    }
    pub fn reference_range(&self) -> Option<String> {
        self.text(7)
    }
    /// OBX-8: `L`, `H`, `LL`, `HH`, `N`, `A`, … (repeats from 2.5).
    pub fn abnormal_flags(&self) -> Vec<String> {
        self.0
            .field(8)
            .repetitions()
            .into_iter()
            .filter_map(|r| r.component(1).text())
            .collect()
    }
    /// OBX-11: `F` final, `P` preliminary, `C` correction, `X` cannot be obtained, …
    pub fn result_status(&self) -> Option<String> {
        self.text(11)
    }
    /// OBX-14, as written.
    pub fn observed_at(&self) -> Option<String> {
        self.0.field(14).component(1).text()
    }
    pub fn responsible_observer(&self) -> Option<Provider> {
        Provider::read(self.0.field(16))
    }
    /// OBX-19 (v2.5), as written.
    pub fn analyzed_at(&self) -> Option<String> {
        self.0.field(19).component(1).text()
    }
}

view!(
    /// Notes and comments.
    Nte,
    "NTE"
);
impl Nte<'_> {
    /// NTE-3, repetitions joined by line breaks.
    pub fn comment(&self) -> Option<String> {
        let lines: Vec<String> = self
            .0
            .field(3)
            .repetitions()
            .into_iter()
            .filter_map(|r| r.text())
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

view!(
    /// Specimen (v2.5).
    Spm,
    "SPM"
);
impl Spm<'_> {
    pub fn specimen_id(&self) -> Option<String> {
        self.0.field(2).component(1).subcomponent(1).text()
    }
    pub fn specimen_type(&self) -> Option<CodedValue> {
        CodedValue::read(self.0.field(4))
    }
    /// SPM-17, as written.
    pub fn collected_at(&self) -> Option<String> {
        self.0.field(17).component(1).subcomponent(1).text()
    }
    /// SPM-18, as written.
    pub fn received_at(&self) -> Option<String> {
        self.0.field(18).component(1).text()
    }
    /// SPM-24, e.g. `HEM` hemolyzed, `CLOT` clotted.
    pub fn condition(&self) -> Option<CodedValue> {
        CodedValue::read(self.0.field(24))
    }
}

view!(
    /// Message acknowledgment.
    Msa,
    "MSA"
);
impl Msa<'_> {
    /// MSA-1: `AA`, `AE`, `AR` (or `CA`, `CE`, `CR`).
    pub fn code(&self) -> Option<String> {
        self.text(1)
    }
    pub fn control_id(&self) -> Option<String> {
        self.text(2)
    }
    pub fn text_message(&self) -> Option<String> {
        self.text(3)
    }
}

view!(
    /// Error.
    ErrorSegment,
    "ERR"
);
impl ErrorSegment<'_> {
    /// ERR-3 (v2.5) or the code component of ERR-1 (v2.3, 2.4).
    pub fn error_code(&self) -> Option<String> {
        self.0
            .field(3)
            .component(1)
            .text()
            .or_else(|| self.0.field(1).component(4).subcomponent(1).text())
    }
    /// ERR-2 (v2.5) or ERR-1: segment id, sequence and field, as `PID-3`.
    pub fn location(&self) -> Option<String> {
        let at = |f: usize| {
            let v = self.0.field(f);
            let segment = v.component(1).text()?;
            Some(match v.component(3).text() {
                Some(field) => format!("{segment}-{field}"),
                None => segment,
            })
        };
        at(2).or_else(|| at(1))
    }
}
