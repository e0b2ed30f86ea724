-- Addresses and insurance carry their patient's tenant: see
-- migrations/postgres/0005_child_tenant.sql. SQLite has no row-level security; the column
-- is here so that both backends store the same rows with the same statements. (SQLite
-- cannot add a NOT NULL column without a default; every write names the tenant.)
ALTER TABLE patient_addresses ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
UPDATE patient_addresses SET tenant_id = (SELECT p.tenant_id FROM patients p WHERE p.patient_id = patient_addresses.patient_id);
ALTER TABLE patient_insurance ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
UPDATE patient_insurance SET tenant_id = (SELECT p.tenant_id FROM patients p WHERE p.patient_id = patient_insurance.patient_id);
