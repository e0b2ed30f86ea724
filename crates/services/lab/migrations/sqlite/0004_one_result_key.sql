-- A result was unique twice over: by (test_id, revision), a constraint, and by
-- idx_lab_results_order (order_id, test_id, revision), the index orders read their results
-- through. A test belongs to one order, so the second key is as unique as the first. Each
-- held a random page per result written (test and order ids are older than the result),
-- and a results message writes one. One unique index now does both. SQLite cannot drop a
-- table constraint, so the table is built again with the same columns and rows.
CREATE TABLE lab_results_new (
    result_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    test_id BLOB NOT NULL REFERENCES lab_tests (test_id) ON DELETE CASCADE,
    order_id BLOB NOT NULL,
    revision INTEGER NOT NULL,
    result_value TEXT NOT NULL,
    result_unit TEXT,
    reference_range TEXT,
    abnormal_flag TEXT,
    performed_by TEXT NOT NULL,
    performed_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    verified_by TEXT,
    verified_at TEXT,
    correction BOOLEAN NOT NULL,
    critical_flag TEXT,
    CONSTRAINT chk_abnormal_flag CHECK (abnormal_flag IN ('L', 'H', 'LL', 'HH', 'N', 'A'))
);
INSERT INTO lab_results_new (result_id, tenant_id, test_id, order_id, revision, result_value,
    result_unit, reference_range, abnormal_flag, performed_by, performed_at, recorded_at,
    verified_by, verified_at, correction, critical_flag)
SELECT result_id, tenant_id, test_id, order_id, revision, result_value, result_unit,
    reference_range, abnormal_flag, performed_by, performed_at, recorded_at, verified_by,
    verified_at, correction, critical_flag
FROM lab_results ORDER BY rowid;
DROP TABLE lab_results;
ALTER TABLE lab_results_new RENAME TO lab_results;
CREATE UNIQUE INDEX idx_lab_results_order ON lab_results (order_id, test_id, revision);
