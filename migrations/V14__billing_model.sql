-- Billing model (issue 11, docs/BILLING.md). Money is BIGINT USD cents; months are calendar
-- months in UTC stored as the DATE of their 1st.
--
-- Money records never cascade from `customers`: a customer with invoices or charges cannot be
-- deleted (close it instead: status 'closed'); the records outlive it.

-- The service journal (BILLING.md §2): one row per change of a service with the state after
-- it, appended by the API in the transaction of the change (and by the manager when a
-- scheduled downgrade takes effect on the 1st). Fee lines are a pure function of it.
CREATE TABLE service_events (
    event_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers (customer_id),
    service_type    SMALLINT NOT NULL CHECK (service_type BETWEEN 1 AND 6),
    at              TIMESTAMPTZ NOT NULL,
    is_enabled      BOOLEAN NOT NULL,
    -- The configuration in force from `at` (ServiceConfig JSON, with its tier).
    config          JSONB NOT NULL CHECK (config ? 'tier'),
    -- A downgrade scheduled for the 1st of the month after `at`.
    pending_config  JSONB CHECK (pending_config IS NULL OR pending_config ? 'tier'),
    source          TEXT NOT NULL CHECK (source IN ('api', 'manager', 'migration')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX service_events_customer ON service_events (customer_id, at);

-- A downgrade waits for the 1st of next month; the configuration in force stays in `config`.
ALTER TABLE service_instances
    ADD COLUMN pending_config JSONB,
    ADD COLUMN pending_from   DATE,
    ADD CONSTRAINT service_instances_pending CHECK ((pending_config IS NULL) = (pending_from IS NULL));

-- The journal starts with the services that exist.
INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, source)
SELECT customer_id, service_type,
       CASE WHEN is_enabled THEN COALESCE(enabled_at, created_at)
            ELSE COALESCE(disabled_at, updated_at) END,
       is_enabled,
       config || jsonb_build_object('tier', tier),
       'migration'
FROM service_instances;

-- Billing suspension (BILLING.md §6): every enabled service of the customer is suspended (the
-- vault leaves them out), while the account stays usable (`status` is the account's own state:
-- a suspended *account* cannot log in, and a customer suspended for billing must be able to
-- deposit and resume).
ALTER TABLE customers
    ADD COLUMN suspension_reason TEXT
        CHECK (suspension_reason IN ('insufficient_balance', 'monthly_limit_reached')),
    ADD COLUMN suspended_at      TIMESTAMPTZ,
    ADD COLUMN suspended_until   TIMESTAMPTZ,
    ADD CONSTRAINT customers_suspension CHECK ((suspension_reason IS NULL) = (suspended_at IS NULL));

-- One invoice per customer and month: draft → pending → paid | failed | void (BILLING.md §4).
CREATE TABLE invoices (
    invoice_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers (customer_id),
    month         DATE NOT NULL CHECK (extract(day FROM month) = 1),
    status        TEXT NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'pending', 'paid', 'failed', 'void')),
    -- Sum of the lines (kept by the line trigger below).
    total_cents   BIGINT NOT NULL DEFAULT 0,
    -- Sum of succeeded charges.
    paid_cents    BIGINT NOT NULL DEFAULT 0 CHECK (paid_cents >= 0),
    -- Charges started against it: the per-invoice sequence in the escrow nonce.
    charge_seq    INTEGER NOT NULL DEFAULT 0 CHECK (charge_seq >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finalized_at  TIMESTAMPTZ,
    paid_at       TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Leader epoch of the last manager write.
    epoch         BIGINT NOT NULL,
    UNIQUE (customer_id, month),
    CHECK ((status = 'draft') = (finalized_at IS NULL)),
    CHECK (status <> 'void' OR total_cents <= 0),
    CHECK (status <> 'paid' OR paid_cents >= total_cents)
);
CREATE INDEX invoices_open ON invoices (customer_id) WHERE status IN ('draft', 'pending', 'failed');

-- Lines. Usage and adjustment lines price the step of a cumulative monthly quantity
-- (quantity_before → quantity_after) of settled usage in [usage_from, usage_to): the raw
-- requests behind a charge are those of the customer and service in that range.
CREATE TABLE invoice_lines (
    line_id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id       BIGINT NOT NULL REFERENCES invoices (invoice_id),
    line_key         TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('fee', 'usage', 'adjustment', 'credit')),
    service_type     SMALLINT CHECK (service_type BETWEEN 1 AND 6),
    metric           TEXT CHECK (metric IN ('requests', 'bandwidth')),
    for_month        DATE NOT NULL CHECK (extract(day FROM for_month) = 1),
    amount_cents     BIGINT NOT NULL,
    quantity_before  BIGINT CHECK (quantity_before >= 0),
    quantity_after   BIGINT CHECK (quantity_after >= 0),
    usage_from       TIMESTAMPTZ,
    usage_to         TIMESTAMPTZ,
    description      TEXT NOT NULL,
    -- Fee lines: how the amount was computed (prices, days, event).
    details          JSONB,
    event_id         BIGINT REFERENCES service_events (event_id),
    epoch            BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (invoice_id, line_key),
    CHECK ((kind IN ('usage', 'adjustment'))
           = (metric IS NOT NULL AND quantity_before IS NOT NULL AND quantity_after IS NOT NULL)),
    CHECK ((kind = 'credit') = (amount_cents < 0) OR amount_cents = 0)
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id);

-- Nothing on an invoice that is no longer a draft ever changes (BILLING.md §4), and the total
-- follows the lines.
CREATE FUNCTION invoice_lines_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    st TEXT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'invoice lines are never changed or deleted (line %)', OLD.line_id;
    END IF;
    SELECT status INTO st FROM invoices WHERE invoice_id = NEW.invoice_id FOR UPDATE;
    IF st IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'invoice % is % (not a draft): lines cannot be added', NEW.invoice_id, st;
    END IF;
    UPDATE invoices SET total_cents = total_cents + NEW.amount_cents, updated_at = now()
    WHERE invoice_id = NEW.invoice_id;
    RETURN NEW;
END $$;
CREATE TRIGGER invoice_lines_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_guard();

-- Settled usage per customer, service and month, kept in step with `usage_records` by a
-- trigger inside the aggregator's settlement transaction (so billing reads month-to-date
-- totals without summing hourly rows, and never sees a half-applied settlement). Rows are
-- added or merged into `usage_records`, never deleted.
CREATE TABLE usage_month_totals (
    customer_id   INTEGER NOT NULL,
    service_type  SMALLINT NOT NULL,
    month         DATE NOT NULL,
    requests      BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, service_type, month)
);

CREATE FUNCTION usage_month_totals_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.customer_id, OLD.service_type, date_trunc('month', OLD.window_start AT TIME ZONE 'UTC'))
                     IS DISTINCT FROM (NEW.customer_id, NEW.service_type, date_trunc('month', NEW.window_start AT TIME ZONE 'UTC')) THEN
        RAISE EXCEPTION 'usage_records keys do not change (row %)', OLD.id;
    END IF;
    INSERT INTO usage_month_totals AS t (customer_id, service_type, month, requests, bytes)
    VALUES (NEW.customer_id, NEW.service_type,
            date_trunc('month', NEW.window_start AT TIME ZONE 'UTC')::date,
            NEW.request_count - CASE WHEN TG_OP = 'UPDATE' THEN OLD.request_count ELSE 0 END,
            NEW.bytes_transferred - CASE WHEN TG_OP = 'UPDATE' THEN OLD.bytes_transferred ELSE 0 END)
    ON CONFLICT (customer_id, service_type, month) DO UPDATE
        SET requests = t.requests + EXCLUDED.requests,
            bytes = t.bytes + EXCLUDED.bytes,
            updated_at = now();
    RETURN NULL;
END $$;
CREATE TRIGGER usage_records_month_totals
    AFTER INSERT OR UPDATE OF request_count, bytes_transferred, customer_id, service_type, window_start
    ON usage_records FOR EACH ROW EXECUTE FUNCTION usage_month_totals_track();

INSERT INTO usage_month_totals (customer_id, service_type, month, requests, bytes)
SELECT customer_id, service_type, date_trunc('month', window_start AT TIME ZONE 'UTC')::date,
       SUM(request_count), SUM(bytes_transferred)
FROM usage_records GROUP BY 1, 2, 3;

-- What has been priced per customer, service and month (the quantity_after of the last usage
-- or adjustment line), updated with the lines. Totals ≠ invoiced = usage not billed yet.
CREATE TABLE usage_invoiced (
    customer_id   INTEGER NOT NULL REFERENCES customers (customer_id),
    service_type  SMALLINT NOT NULL,
    month         DATE NOT NULL,
    requests      BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),
    bytes         BIGINT NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    PRIMARY KEY (customer_id, service_type, month)
);
