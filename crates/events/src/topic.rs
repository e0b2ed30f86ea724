/// The topics of 000 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    PatientEvents,
    LabEvents,
    InsuranceEvents,
    PharmacyEvents,
    AuditEvents,
    NotificationEvents,
    DlqEvents,
}

impl Topic {
    pub const ALL: [Topic; 7] = [
        Topic::PatientEvents,
        Topic::LabEvents,
        Topic::InsuranceEvents,
        Topic::PharmacyEvents,
        Topic::AuditEvents,
        Topic::NotificationEvents,
        Topic::DlqEvents,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Topic::PatientEvents => "patient-events",
            Topic::LabEvents => "lab-events",
            Topic::InsuranceEvents => "insurance-events",
            Topic::PharmacyEvents => "pharmacy-events",
            Topic::AuditEvents => "audit-events",
            Topic::NotificationEvents => "notification-events",
            Topic::DlqEvents => "dlq-events",
        }
    }
}
