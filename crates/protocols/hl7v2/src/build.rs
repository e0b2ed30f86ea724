//! The messages MediTrack sends: a lab order to the laboratory's LIS as ORM^O01 (v2.3
//! style, what most LIS still take) or OML^O21 (v2.5.1), and its cancellation.

use crate::message::Segment;
use crate::{Delimiters, Message, time};
use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStyle {
    OrmO01,
    OmlO21,
}

/// What the LIS is told about the patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPatient {
    /// Our patient id, sent as an `MR` identifier assigned by `MEDITRACK`.
    pub id: String,
    pub family: String,
    pub given: String,
    pub birth_date: Option<NaiveDate>,
    /// `F`, `M`, `O`, `U`.
    pub sex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTest {
    pub code: String,
    pub name: String,
    /// Sent as the LOINC alternate coding when known.
    pub loinc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundOrder {
    pub control_id: String,
    pub sent_at: DateTime<Utc>,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub patient: OrderPatient,
    /// Our order id: the placer order number the LIS answers with in OBR-2.
    pub placer_order: String,
    /// `S` stat, `A` as soon as possible (urgent), `R` routine.
    pub priority: String,
    pub tests: Vec<OrderTest>,
    pub provider_id: String,
    pub provider_name: String,
    /// ICD-10-CM codes.
    pub diagnoses: Vec<String>,
    pub ordered_at: DateTime<Utc>,
}

/// A new order (ORC-1 `NW`): one ORC/OBR pair per test, all with our order id as placer
/// order number (`<order id>-<n>` per test, so each result names its test).
pub fn new_order(o: &OutboundOrder, style: OrderStyle) -> Message {
    order_message(o, style, "NW")
}

/// The cancellation of an order sent before (ORC-1 `CA`).
pub fn cancel_order(o: &OutboundOrder, style: OrderStyle) -> Message {
    order_message(o, style, "CA")
}

/// The placer order number of test `n` (from 1) of order `order`.
pub fn placer_number(order: &str, n: usize) -> String {
    format!("{order}-{n}")
}

fn order_message(o: &OutboundOrder, style: OrderStyle, control: &str) -> Message {
    let d = Delimiters::default();
    let (code, version) = match style {
        OrderStyle::OrmO01 => (["ORM", "O01", "ORM_O01"], "2.3.1"),
        OrderStyle::OmlO21 => (["OML", "O21", "OML_O21"], "2.5.1"),
    };
    let mut msh = Segment::new("MSH", d);
    msh.set_text(3, crate::ack::DEFAULT_APPLICATION)
        .set_text(4, &o.sending_facility)
        .set_text(5, &o.receiving_application)
        .set_text(6, &o.receiving_facility)
        .set_text(7, &time::format_datetime(o.sent_at))
        .set_components(9, &code)
        .set_text(10, &o.control_id)
        .set_text(11, "P")
        .set_text(12, version);
    let mut m = Message::new(msh);
    let p = &o.patient;
    let dob = p.birth_date.map(time::format_date).unwrap_or_default();
    m.push("PID")
        .set_text(1, "1")
        .set_components(3, &[&p.id, "", "", "MEDITRACK", "MR"])
        .set_components(5, &[&p.family, &p.given])
        .set_text(7, &dob)
        .set_text(8, p.sex.as_deref().unwrap_or(""));
    let ordered_at = time::format_datetime(o.ordered_at);
    for (i, t) in o.tests.iter().enumerate() {
        let placer = placer_number(&o.placer_order, i + 1);
        let provider = [o.provider_id.as_str(), o.provider_name.as_str()];
        let orc = m.push("ORC");
        orc.set_text(1, control)
            .set_components(2, &[&placer, "MEDITRACK"])
            .set_text(9, &ordered_at)
            .set_components(12, &provider);
        if style == OrderStyle::OrmO01 {
            // v2.3 carries the priority in quantity/timing.
            orc.set_components(7, &["", "", "", "", "", &o.priority]);
        }
        let service = [
            t.code.as_str(),
            t.name.as_str(),
            "L",
            t.loinc.as_deref().unwrap_or(""),
            if t.loinc.is_some() {
                t.name.as_str()
            } else {
                ""
            },
            if t.loinc.is_some() { "LN" } else { "" },
        ];
        let set_id = (i + 1).to_string();
        let obr = m.push("OBR");
        obr.set_text(1, &set_id)
            .set_components(2, &[&placer, "MEDITRACK"])
            .set_components(4, &service)
            .set_text(6, &ordered_at)
            .set_components(16, &provider);
        if style == OrderStyle::OmlO21 {
            obr.set_text(5, &o.priority);
        }
        for (j, dx) in o.diagnoses.iter().enumerate() {
            m.push("DG1")
                .set_text(1, &(j + 1).to_string())
                .set_components(3, &[dx, "", "I10"]);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Inbound, interpret};

    fn order() -> OutboundOrder {
        let at = time::parse_datetime("20240102030405").unwrap();
        OutboundOrder {
            control_id: "OUT-1".into(),
            sent_at: at,
            sending_facility: "HOSP".into(),
            receiving_application: "LIS".into(),
            receiving_facility: "LAB".into(),
            patient: OrderPatient {
                id: "p-1".into(),
                family: "O'Hara|Smith".into(),
                given: "Ann".into(),
                birth_date: NaiveDate::from_ymd_opt(1980, 2, 29),
                sex: Some("F".into()),
            },
            placer_order: "ord-1".into(),
            priority: "S".into(),
            tests: vec![
                OrderTest {
                    code: "GLU".into(),
                    name: "Glucose".into(),
                    loinc: Some("2345-7".into()),
                },
                OrderTest {
                    code: "CBC".into(),
                    name: "Blood count".into(),
                    loinc: None,
                },
            ],
            provider_id: "NPI1".into(),
            provider_name: "Synthetic".into(),
            diagnoses: vec!["R73.9".into()],
            ordered_at: at,
        }
    }

    #[test]
    fn an_order_reads_back_as_what_was_ordered_in_both_styles() {
        for style in [OrderStyle::OrmO01, OrderStyle::OmlO21] {
            let m = new_order(&order(), style);
            let read = crate::parse(&m.encode()).unwrap();
            let Inbound::Orders(o) = interpret(&read).unwrap() else {
                panic!("not read as an order")
            };
            assert_eq!(o.orders.len(), 2);
            assert_eq!(o.orders[0].placer_order.as_deref(), Some("ord-1-1"));
            assert_eq!(o.orders[0].service.as_ref().unwrap().code, "GLU");
            assert_eq!(o.orders[0].diagnoses[0].code, "R73.9");
            assert_eq!(o.orders[0].control, "NW");
            let name = &o.patient.as_ref().unwrap().name;
            assert_eq!(
                name.family.as_deref(),
                Some("O'Hara|Smith"),
                "escaped and back"
            );
            assert_eq!(o.header.control_id, "OUT-1");
        }
        let cancel = cancel_order(&order(), OrderStyle::OrmO01);
        assert!(cancel.encode().contains("\rORC|CA|ord-1-1^MEDITRACK|"));
    }
}
