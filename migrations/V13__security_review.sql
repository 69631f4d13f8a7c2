-- Security review (issue 15): items 11 (ledger, usage checks) and 7 (refresh-token families).
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

-- Refresh-token families (item 7): a login starts a family, each refresh rotates within it.
-- Presenting a token that was already rotated revokes the whole family; access tokens carry
-- their family and stop working with it. Rows from before this migration become families of
-- one token.
ALTER TABLE refresh_tokens ADD COLUMN family_id BYTEA;
UPDATE refresh_tokens SET family_id = token_hash WHERE family_id IS NULL;
ALTER TABLE refresh_tokens ALTER COLUMN family_id SET NOT NULL;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id) WHERE revoked_at IS NULL;
