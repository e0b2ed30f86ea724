-- Tenant isolation of the audit trail enforced by PostgreSQL (see the patient service's
-- 0004_row_level_security.sql for how scopes work). Listing every chain, verifying all of
-- them and retention run with app.all_tenants; appends and reads name their tenant.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON audit_log
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON audit_heads
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');

ALTER TABLE audit_anchors ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON audit_anchors
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
