-- Tenant isolation enforced by PostgreSQL as well as by our queries: the service's pool acts
-- as the role meditrack_app (store::open), which owns nothing, so these policies apply to
-- every statement it runs. A transaction sees one tenant's rows, the one named by
-- app.current_tenant (store::Scope::Tenant); only maintenance that walks every tenant
-- (re-sealing after a key rotation) sets app.all_tenants. With neither set, nothing is
-- visible and nothing can be written: a query that forgets its tenant finds nothing.
-- The same expression serves as USING and WITH CHECK, so a row cannot be written into, or
-- moved to, another tenant either.
ALTER TABLE patients ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON patients
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE medical_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON medical_records
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE lab_order_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON lab_order_requests
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE patient_timeline ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON patient_timeline
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE mrn_counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON mrn_counters
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON idempotency_keys
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

-- Addresses and insurance have no tenant column: they belong to a patient, and are visible
-- exactly when their patient is (the subquery is itself filtered by the policy above; the
-- primary key makes it one index probe per row).
ALTER TABLE patient_addresses ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON patient_addresses
    USING (EXISTS (SELECT 1 FROM patients p WHERE p.patient_id = patient_addresses.patient_id));

ALTER TABLE patient_insurance ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON patient_insurance
    USING (EXISTS (SELECT 1 FROM patients p WHERE p.patient_id = patient_insurance.patient_id));
