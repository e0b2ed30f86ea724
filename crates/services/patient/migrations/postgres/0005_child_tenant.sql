-- Addresses and insurance carry their patient's tenant, and their policy is on it, as on
-- every other tenant table. Their first policy admitted a row whose patient was visible:
-- a statement that inserts a patient cannot insert its addresses too (a row written by
-- the same statement is not visible to it), so a registration was three statements in a
-- transaction, and each read of an address ran a subquery on patients. With their own
-- tenant a registration is one statement that sets its own tenant, and a read one filter.
--
-- The tenant always equals the patient's: rows are written only beside their patient (a
-- registration) or after their patient's own row was updated under the same tenant (an
-- update), and the policy's WITH CHECK refuses a row of any tenant but the writer's. The
-- other child tables (medical_records, patient_timeline) are kept to their patient's
-- tenant the same way.
ALTER TABLE patient_addresses ADD COLUMN tenant_id VARCHAR(50);
UPDATE patient_addresses a SET tenant_id = p.tenant_id FROM patients p WHERE p.patient_id = a.patient_id;
ALTER TABLE patient_addresses ALTER COLUMN tenant_id SET NOT NULL;
DROP POLICY tenant_rows ON patient_addresses;
CREATE POLICY tenant_rows ON patient_addresses
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE patient_insurance ADD COLUMN tenant_id VARCHAR(50);
UPDATE patient_insurance i SET tenant_id = p.tenant_id FROM patients p WHERE p.patient_id = i.patient_id;
ALTER TABLE patient_insurance ALTER COLUMN tenant_id SET NOT NULL;
DROP POLICY tenant_rows ON patient_insurance;
CREATE POLICY tenant_rows ON patient_insurance
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
