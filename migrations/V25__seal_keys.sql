-- Seal keys (issue 13, SPEC §5): what a customer's Seal service serves. V11 made the table;
-- this adds how each key came to be and what the key server needs of it.
--
-- - derived: the key server derives the key from its master seed at `derivation_index`
--   (from a sequence: an index is never handed out twice, not even after a delete);
-- - imported: the customer brought the key; `encrypted_private_key` is the private key
--   encrypted to the key server (opaque here: the API never sees it in the clear).
-- A delete keeps the row (is_active = false, revoked_at set): the index stays taken and the
-- key server can tell a revoked key from an unknown one.
-- package_ids (V11): the Sui package ids (0x + 64 hex) the key serves; 3 per key are
-- included, more are bought (service_instances.config.extra_packages).

ALTER TABLE seal_keys
    ADD COLUMN name text NOT NULL DEFAULT '' CHECK (length(name) <= 64),
    ADD COLUMN source text NOT NULL DEFAULT 'derived' CHECK (source IN ('derived', 'imported')),
    ADD COLUMN network smallint NOT NULL DEFAULT 1 CHECK (network IN (0, 1)),
    ADD COLUMN encrypted_private_key bytea,
    ADD CONSTRAINT seal_keys_material CHECK (
        (source = 'derived' AND derivation_index IS NOT NULL AND encrypted_private_key IS NULL)
        OR (source = 'imported' AND derivation_index IS NULL AND encrypted_private_key IS NOT NULL)),
    ADD CONSTRAINT seal_keys_revoked CHECK (is_active = (revoked_at IS NULL)),
    ADD CONSTRAINT seal_keys_packages_array CHECK (jsonb_typeof(package_ids) = 'array');

CREATE SEQUENCE seal_derivation_index AS integer MINVALUE 0 START WITH 0;
CREATE UNIQUE INDEX seal_keys_derivation_unique ON seal_keys (derivation_index)
    WHERE derivation_index IS NOT NULL;
CREATE INDEX seal_keys_active ON seal_keys (customer_id) WHERE is_active;

-- A key created, deleted or its packages changed: the key server's configuration changes
-- (the vault stage regenerates, as for API keys; V21's function and channel).
CREATE TRIGGER seal_keys_vault_notify
    AFTER INSERT OR DELETE OR UPDATE OF is_active, revoked_at, package_ids ON seal_keys
    FOR EACH ROW EXECUTE FUNCTION vault_notify_access();
