//! Messages shaped like those laboratories and EHRs send (synthetic data), read into what
//! MediTrack needs, and the ways they can be refused.

use hl7v2::messages::{Inbound, interpret};
use hl7v2::{ErrorCode, parse};

fn read(text: &str) -> Result<Inbound, hl7v2::Hl7Error> {
    interpret(&parse(text).expect("well-formed"))
}

const ORU_251: &str = "MSH|^~\\&|LIS|CITYLAB^2.16.840.1.113883.3.1^ISO|MEDITRACK|HOSP|20240315083000-0500||ORU^R01^ORU_R01|LAB000123|P|2.5.1|||AL|NE\r\
PID|1||PAT-7781^^^HOSP^MR~123-45-6789^^^SSA^SS||Synthetic^Dana^R||19750412|F|||12 Test St^^Springfield^IL^62701||^PRN^PH^^1^555^2345678\r\
PV1|1|O|OPD^^^HOSP\r\
ORC|RE|ORD-99-1^MEDITRACK|F-4410^CITYLAB||CM\r\
OBR|1|ORD-99-1^MEDITRACK|F-4410^CITYLAB|24323-8^Comprehensive metabolic panel^LN|||20240315071500-0500|||||||||NPI123^Provider^Pat||||||20240315082500-0500|||F\r\
OBX|1|NM|2345-7^Glucose^LN||412|mg/dL^milligrams per deciliter^UCUM|70-99|HH|||F|||20240315080000-0500|||||20240315081000-0500\r\
NTE|1|L|Critical value called to the ward.\r\
OBX|2|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F\r\
OBX|3|SN|2160-0^Creatinine^LN||<^0.3|mg/dL|0.6-1.2|L|||F\r\
OBX|4|CWE|5778-6^Color of Urine^LN||YEL^Yellow^HL70000||||||F\r\
OBX|5|TX|8251-1^Comment^LN||Line one\\.br\\Line two~Third line||||||F\r\
SPM|1|SP-1&CITYLAB||BLD^Blood^HL70487|||||||||||||20240315070000-0500|20240315073000-0500||||||HEM^Hemolyzed^HL70493\r\
ZXY|kept|as is\r";

#[test]
fn an_oru_r01_reads_into_orders_results_notes_and_specimens() {
    let Inbound::Results(r) = read(ORU_251).unwrap() else {
        panic!("not results")
    };
    assert_eq!(r.header.control_id, "LAB000123");
    assert_eq!(r.header.sending_application.as_deref(), Some("LIS"));
    let p = r.patient.unwrap();
    assert_eq!(p.identifiers[0].id, "PAT-7781");
    assert_eq!(p.identifiers[1].kind.as_deref(), Some("SS"));
    assert_eq!(p.name.family.as_deref(), Some("Synthetic"));
    assert_eq!(p.birth_date.unwrap().to_string(), "1975-04-12");
    let o = &r.orders[0];
    assert_eq!(o.placer_order.as_deref(), Some("ORD-99-1"));
    assert_eq!(o.filler_order.as_deref(), Some("F-4410"));
    assert_eq!(o.service.code, "24323-8");
    assert_eq!(o.status.as_deref(), Some("F"));
    assert_eq!(
        o.observed_at.unwrap().to_rfc3339(),
        "2024-03-15T12:15:00+00:00"
    );
    assert_eq!(
        o.ordering_provider.as_ref().unwrap().id.as_deref(),
        Some("NPI123")
    );
    let glucose = &o.observations[0];
    assert!(glucose.code.is_loinc());
    assert_eq!(
        (
            glucose.value.as_deref(),
            glucose.units.as_deref(),
            glucose.reference_range.as_deref()
        ),
        (Some("412"), Some("mg/dL"), Some("70-99"))
    );
    assert_eq!(glucose.abnormal_flags, ["HH"]);
    assert_eq!(glucose.notes, ["Critical value called to the ward."]);
    assert_eq!(o.observations[2].value.as_deref(), Some("<0.3"));
    assert_eq!(o.observations[3].value.as_deref(), Some("Yellow"));
    assert_eq!(
        o.observations[4].value.as_deref(),
        Some("Line one\nLine two\nThird line")
    );
    let spm = &o.specimens[0];
    assert_eq!(spm.id.as_deref(), Some("SP-1"));
    assert_eq!(spm.condition.as_ref().unwrap().code, "HEM");
    assert_eq!(
        spm.received_at.unwrap().to_rfc3339(),
        "2024-03-15T12:30:00+00:00"
    );
}

#[test]
fn an_older_oru_with_line_feeds_and_several_orders() {
    let text = "MSH|^~\\&|ANALYZER|LAB|||200301011226||ORU^R01|MSG00001|P|2.3\n\
PID|||555444222111^^^MPI&GenHosp&L^MR||Everyman^Adam^A||19610615|M\n\
OBR|1|845439^GHH OE|1045813^GHH LAB|1554-5^GLUCOSE|||200202150730\n\
OBX|1|SN|1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN||^182|mg/dl|70_105|H|||F\n\
OBR|2|845440^GHH OE|1045814^GHH LAB|718-7^HEMOGLOBIN^LN\n\
OBX|1|NM|718-7^HEMOGLOBIN^LN||13.2|g/dL|12-16|N|||F\n";
    let Inbound::Results(r) = read(text).unwrap() else {
        panic!("not results")
    };
    assert_eq!(r.orders.len(), 2);
    assert_eq!(r.orders[0].observations[0].value.as_deref(), Some("182"));
    assert_eq!(
        r.patient.unwrap().identifiers[0].authority.as_deref(),
        Some("MPI")
    );
    assert_eq!(r.orders[1].observations[0].abnormal_flags, ["N"]);
}

#[test]
fn orders_and_patients_read_too() {
    let orm = "MSH|^~\\&|EHR|CLINIC|LIS|LAB|20240102||ORM^O01|ORM-1|P|2.3\r\
PID|1||MRN-5^^^CLINIC^MR||Test^Tina||19900101|F\r\
ORC|NW|PL-77|||||^^^^^S||20240102101500|||NPI9^Doc^Ann\r\
OBR|1|PL-77||2345-7^Glucose^LN\r\
DG1|1||R73.9^Hyperglycemia^I10\r\
NTE|1||Fasting\r";
    let Inbound::Orders(o) = read(orm).unwrap() else {
        panic!("not orders")
    };
    let order = &o.orders[0];
    assert_eq!(
        (order.control.as_str(), order.placer_order.as_deref()),
        ("NW", Some("PL-77"))
    );
    assert_eq!(order.diagnoses[0].code, "R73.9");
    assert_eq!(order.notes, ["Fasting"]);
    assert_eq!(
        order
            .ordering_provider
            .as_ref()
            .unwrap()
            .display_name()
            .as_deref(),
        Some("Ann Doc")
    );

    let adt = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.5.1\r\
EVN|A01|200708181123||\r\
PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^MR^GOOD HEALTH HOSPITAL^^^USSSA^SS||EVERYMAN^ADAM^A^III||19610615|M||C|2222 HOME STREET^^GREENSBORO^NC^27401-1020\r\
NK1|1|NUCLEAR^NELDA^W|SPO^SPOUSE\r\
PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|\r";
    let Inbound::Patient(p) = read(adt).unwrap() else {
        panic!("not a patient")
    };
    assert_eq!(p.header.trigger_event, "A01");
    assert_eq!(p.patient.identifiers[0].id, "PATID1234");
    assert_eq!(
        p.patient.address.as_ref().unwrap().city.as_deref(),
        Some("GREENSBORO")
    );
    assert_eq!(p.patient_class.as_deref(), Some("I"));
    assert_eq!(p.attending_doctor.unwrap().id.as_deref(), Some("004777"));
}

#[test]
fn refusals_say_ar_for_kinds_not_taken_and_ae_with_the_field_for_bad_content() {
    let refused = |text: &str| read(text).unwrap_err();
    let e = refused("MSH|^~\\&|A||||20240101||SIU^S12|1|P|2.5");
    assert_eq!(e.code, ErrorCode::UnsupportedMessageType);
    assert!(e.code.is_rejection());
    let e = refused("MSH|^~\\&|A||||20240101||ADT^A03|1|P|2.5\rPID|1||X");
    assert_eq!(e.code, ErrorCode::UnsupportedEventCode);
    let e = refused("MSH|^~\\&|A||||20240101||ORU^R01|1|P|3.0");
    assert_eq!(e.code, ErrorCode::UnsupportedVersionId);

    let bad_content = [
        (
            "MSH|^~\\&|A||||20240101||ORU^R01||P|2.5\rOBR|1|||X",
            "MSH-10",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rPID|1||X",
            "OBR-4",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rOBR|1\rOBX|1|NM",
            "OBR-4",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rOBR|1|||X\rOBX|1|NM||",
            "OBX-3",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rOBX|1|NM|X",
            "OBX",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rPID|1||X||Y||1961-06-15\rOBR|1|||X",
            "PID-7",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rOBR|1|||X|||yesterday",
            "OBR-7",
        ),
        (
            "MSH|^~\\&|A||||20240101||ADT^A04|1|P|2.5\rPID|1||||Doe^J",
            "PID-3",
        ),
        (
            "MSH|^~\\&|A||||20240101||ADT^A08|1|P|2.5\rPID|1||ID1||^Jo",
            "PID-5.1",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORM^O01|1|P|2.3\rPID|1||X\rORC|NW|P1",
            "OBR-4",
        ),
        (
            "MSH|^~\\&|A||||20240101||ORM^O01|1|P|2.3\rOBR|1|P1||X",
            "OBR",
        ),
    ];
    for (text, at) in bad_content {
        let e = refused(text);
        assert!(!e.code.is_rejection(), "{text:?}: {e:?}");
        assert_eq!(e.location.as_ref().unwrap().to_string(), at, "{text:?}");
    }
}

#[test]
fn errors_never_quote_values() {
    let e = read("MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.5\rPID|1||X||Y||SECRET-DOB\rOBR|1|||X")
        .unwrap_err();
    assert!(!e.message.contains("SECRET"), "{}", e.message);
}

#[test]
fn results_for_several_patients_in_one_message_keep_their_own_patient() {
    let text = "MSH|^~\\&|LIS|LAB|||20240101||ORU^R01|M-2|P|2.4\r\
PID|1||MRN-A^^^H^MR||Alpha^Ann\r\
OBR|1|P-1||718-7^Hemoglobin^LN\r\
OBX|1|NM|718-7^Hemoglobin^LN||13.1|g/dL\r\
PID|2||MRN-B^^^H^MR||Bravo^Ben\r\
OBR|1|P-2||718-7^Hemoglobin^LN\r\
OBX|1|NM|718-7^Hemoglobin^LN||9.4|g/dL|12-16|L\r";
    let Inbound::Results(r) = read(text).unwrap() else {
        panic!("not results")
    };
    let ids: Vec<&str> = r
        .orders
        .iter()
        .map(|o| o.patient.as_ref().unwrap().identifiers[0].id.as_str())
        .collect();
    assert_eq!(ids, ["MRN-A", "MRN-B"]);
    assert_eq!(r.patient.unwrap().identifiers[0].id, "MRN-A");
}
