-- A result was unique twice over: by (test_id, revision), a constraint, and by
-- idx_lab_results_order (order_id, test_id, revision), the index orders read their results
-- through. A test belongs to one order, so the second key is as unique as the first, and
-- each result written updated both. One unique index now does both.
ALTER TABLE lab_results DROP CONSTRAINT uq_result_revision;
DROP INDEX idx_lab_results_order;
CREATE UNIQUE INDEX idx_lab_results_order ON lab_results (order_id, test_id, revision);
