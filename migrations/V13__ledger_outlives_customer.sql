-- Security review (issue 15, item 11).
--
-- The escrow ledger records money that moved on chain: it must outlive the customer row. With
-- ON DELETE CASCADE, deleting a customer silently erased their deposits, withdrawals and
-- charges. RESTRICT makes such a delete fail; an account is closed with
-- customers.status = 'closed', never deleted while it has ledger rows.
ALTER TABLE escrow_transactions
    DROP CONSTRAINT escrow_transactions_customer_id_fkey,
    ADD CONSTRAINT escrow_transactions_customer_id_fkey
        FOREIGN KEY (customer_id) REFERENCES customers (customer_id) ON DELETE RESTRICT;

-- Usage is what customers are billed for: counts, bytes and charges are never negative, and
-- revisions count up from 0.
ALTER TABLE usage_records
    ADD CONSTRAINT usage_records_request_count_nonneg CHECK (request_count >= 0),
    ADD CONSTRAINT usage_records_bytes_nonneg CHECK (bytes_transferred >= 0),
    ADD CONSTRAINT usage_records_charged_nonneg CHECK (charged_amount IS NULL OR charged_amount >= 0),
    ADD CONSTRAINT usage_records_revision_nonneg CHECK (revision >= 0);
