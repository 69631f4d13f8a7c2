-- Access changes wake the manager (issue 12): anything that changes who HAProxy lets through
-- notifies the manager's channel at commit, so the vault is regenerated and pushed within
-- about a second, whatever made the change (the API, the manager's own billing suspension,
-- a scheduled downgrade on the 1st, an operator's SQL). NOTIFY is transactional: nothing is
-- sent for a rolled-back change, and duplicates within a transaction are folded by PostgreSQL.
-- Payload as the manager parses it: {"event": ..., "customer_id": N}.

CREATE FUNCTION vault_notify_access() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_data jsonb := to_jsonb(COALESCE(NEW, OLD));
BEGIN
    PERFORM pg_notify('suiftly_manager', json_build_object(
        'event', 'access_changed',
        'table', TG_TABLE_NAME,
        'customer_id', (row_data->>'customer_id')::integer)::text);
    RETURN NULL;
END
$$;

-- Key created, revoked, regenerated (= revoke + create) or deleted.
CREATE TRIGGER api_keys_vault_notify
    AFTER INSERT OR DELETE OR UPDATE OF is_active, revoked_at ON api_keys
    FOR EACH ROW EXECUTE FUNCTION vault_notify_access();

-- Service enabled, disabled, tier or add-ons changed.
CREATE TRIGGER service_instances_vault_notify
    AFTER INSERT OR DELETE OR UPDATE OF is_enabled, tier, config ON service_instances
    FOR EACH ROW EXECUTE FUNCTION vault_notify_access();

-- Customer suspended, resumed or closed. Only those columns: billing updates balances on
-- every charge, and a notification per charge would wake the manager for nothing (and could
-- feed back into its own cycle). `suspension_reason` is read through to_jsonb so this
-- migration does not depend on when the billing schema added the column.
CREATE TRIGGER customers_vault_notify
    AFTER UPDATE ON customers
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR to_jsonb(OLD)->>'suspension_reason' IS DISTINCT FROM to_jsonb(NEW)->>'suspension_reason')
    EXECUTE FUNCTION vault_notify_access();
