//! The OpenAPI 3.0 document served at `/openapi.json`. Written by hand next to the route table;
//! `tests/openapi.rs` checks that both list exactly the same (method, path) pairs.

use serde_json::{Map, Value, json};

fn err_ref() -> Value {
    json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn service_param() -> Value {
    json!({ "name": "service", "in": "path", "required": true,
            "description": "seal, grpc or graphql (ssfn and sealo are reserved: 422 service_not_available)",
            "schema": { "type": "string", "enum": ["seal", "grpc", "graphql", "ssfn", "sealo"] } })
}

fn seal_key_param() -> Value {
    json!({ "name": "seal_key_id", "in": "path", "required": true, "schema": { "type": "integer", "format": "int64" } })
}

fn key_param() -> Value {
    json!({ "name": "key_id", "in": "path", "required": true, "schema": { "type": "integer", "format": "int64" } })
}

fn stats_params(series: bool) -> Vec<Value> {
    let mut v = vec![
        json!({ "name": "service", "in": "query", "required": false, "description": "only this service",
                "schema": { "type": "string", "enum": ["seal", "grpc", "graphql", "platform", "ssfn", "sealo"] } }),
        json!({ "name": "network", "in": "query", "required": false, "description": "only this network",
                "schema": { "type": "string", "enum": ["mainnet", "testnet", "devnet", "localnet"] } }),
    ];
    if series {
        v.push(json!({ "name": "range", "in": "query", "required": false,
            "description": "window ending with the current bucket (default 24h); not with period",
            "schema": { "type": "string", "enum": ["24h", "7d", "30d"] } }));
        v.push(
            json!({ "name": "interval", "in": "query", "required": false,
            "description": "bucket size (UTC); default hour for 24h, day otherwise",
            "schema": { "type": "string", "enum": ["hour", "day"] } }),
        );
        v.push(json!({ "name": "period", "in": "query", "required": false,
            "description": "a billing period (UTC month) instead of a range: summed, the usage series equals the invoice's usage",
            "schema": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" } }));
    }
    v
}

fn series_schema(point: &str) -> Value {
    json!({ "type": "object", "additionalProperties": false, "required": [
            "range", "period", "interval", "from", "to", "service", "network", "settled_before", "points"], "properties": {
        "range": { "type": "string", "enum": ["24h", "7d", "30d"], "nullable": true },
        "period": { "type": "string", "nullable": true },
        "interval": { "type": "string", "enum": ["hour", "day"] },
        "from": { "type": "string", "format": "date-time" },
        "to": { "type": "string", "format": "date-time", "description": "exclusive" },
        "service": { "type": "string", "nullable": true },
        "network": { "type": "string", "nullable": true },
        "settled_before": { "type": "string", "format": "date-time", "description": "metering has settled every minute before this" },
        "points": { "type": "array", "items": { "$ref": format!("#/components/schemas/{point}") },
                    "description": "completed buckets always (zero when empty); a partial bucket only when it has data" } } })
}

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    params: Vec<Value>,
    body: Option<Value>,
    status: &'static str,
    response: Value,
    errors: &'static [&'static str],
}

fn ops() -> Vec<Op> {
    let obj = json!({ "type": "object" });
    let cfg = json!({ "$ref": "#/components/schemas/ServiceConfig" });
    let svc = json!({ "$ref": "#/components/schemas/Service" });
    let key = json!({ "$ref": "#/components/schemas/ApiKey" });
    let money = json!({ "$ref": "#/components/schemas/Balance" });
    let moves = json!({ "$ref": "#/components/schemas/MoveRequest" });
    let session = json!({ "$ref": "#/components/schemas/Session" });
    let movement = json!({ "$ref": "#/components/schemas/Movement" });
    let quote = json!({ "$ref": "#/components/schemas/Quote" });
    let o = |method,
             path,
             summary,
             auth,
             params: Vec<Value>,
             body: Option<Value>,
             status,
             response: Value,
             errors| Op {
        method,
        path,
        summary,
        auth,
        params,
        body,
        status,
        response,
        errors,
    };
    vec![
        o(
            "get",
            "/health",
            "Liveness and database reachability",
            false,
            vec![],
            None,
            "200",
            json!({ "type": "object", "required": ["status", "database"], "additionalProperties": false, "properties": {
                "status": { "type": "string", "enum": ["ok", "degraded"] },
                "database": { "type": "string", "enum": ["ok", "unreachable"] } } }),
            &["503"],
        ),
        o(
            "get",
            "/openapi.json",
            "This document",
            false,
            vec![],
            None,
            "200",
            obj,
            &[],
        ),
        o(
            "post",
            "/auth/connect",
            "Get a login nonce and the message to sign",
            false,
            vec![],
            Some(
                json!({ "type": "object", "required": ["walletAddress"], "additionalProperties": false,
                       "properties": { "walletAddress": { "type": "string", "pattern": "^0x[0-9a-fA-F]{64}$" } } }),
            ),
            "200",
            json!({ "type": "object", "required": ["nonce", "message", "expiresAt"], "additionalProperties": false,
                         "properties": { "nonce": { "type": "string" }, "message": { "type": "string" }, "expiresAt": { "type": "string" } } }),
            &["400", "413", "429"],
        ),
        o(
            "post",
            "/auth/verify",
            "Verify the wallet signature; returns an access token and sets the refresh cookie",
            false,
            vec![],
            Some(
                json!({ "type": "object", "required": ["walletAddress", "signature", "nonce"], "additionalProperties": false,
                       "properties": { "walletAddress": { "type": "string" }, "signature": { "type": "string" }, "nonce": { "type": "string" } } }),
            ),
            "200",
            session.clone(),
            &["400", "401", "413", "429"],
        ),
        o(
            "post",
            "/auth/refresh",
            "Rotate the refresh cookie and get a new access token",
            false,
            vec![],
            None,
            "200",
            session,
            &["401", "429"],
        ),
        o(
            "post",
            "/auth/logout",
            "Revoke the refresh cookie",
            false,
            vec![],
            None,
            "204",
            Value::Null,
            &["429"],
        ),
        o(
            "get",
            "/services",
            "The caller's services",
            true,
            vec![],
            None,
            "200",
            json!({ "type": "object", "required": ["services", "suspension"], "additionalProperties": false, "properties": {
                "services": { "type": "array", "items": svc.clone() },
                "suspension": { "allOf": [{ "$ref": "#/components/schemas/Suspension" }], "nullable": true,
                                "description": "billing suspension of every enabled service (null: not suspended)" } } }),
            &["401", "429"],
        ),
        o(
            "get",
            "/services/{service}",
            "One service",
            true,
            vec![service_param()],
            None,
            "200",
            svc.clone(),
            &["401", "404", "422", "429"],
        ),
        o(
            "put",
            "/services/{service}/config",
            "Replace the configuration (cost-checked when enabled)",
            true,
            vec![service_param()],
            Some(cfg.clone()),
            "200",
            svc.clone(),
            &["400", "401", "402", "404", "413", "422", "429"],
        ),
        o(
            "post",
            "/services/{service}/enable",
            "Enable (cost-checked)",
            true,
            vec![service_param()],
            None,
            "200",
            svc.clone(),
            &["401", "402", "404", "422", "429"],
        ),
        o(
            "post",
            "/services/{service}/disable",
            "Disable",
            true,
            vec![service_param()],
            None,
            "200",
            svc.clone(),
            &["401", "404", "422", "429"],
        ),
        o(
            "put",
            "/services/{service}/tier",
            "Change tier (cost-checked when enabled)",
            true,
            vec![service_param()],
            Some(
                json!({ "type": "object", "required": ["tier"], "additionalProperties": false,
                       "properties": { "tier": { "$ref": "#/components/schemas/Tier" } } }),
            ),
            "200",
            svc,
            &["400", "401", "402", "404", "413", "422", "429"],
        ),
        o(
            "post",
            "/services/{service}/quote",
            "Price of a proposed configuration and whether it is allowed now",
            true,
            vec![service_param()],
            Some(cfg),
            "200",
            quote,
            &["400", "401", "404", "413", "422", "429"],
        ),
        o(
            "get",
            "/keys",
            "The caller's API keys (masked)",
            true,
            vec![
                json!({ "name": "service", "in": "query", "required": false, "schema": { "type": "string", "enum": ["seal", "grpc", "graphql"] } }),
                json!({ "name": "include_revoked", "in": "query", "required": false, "schema": { "type": "boolean" } }),
            ],
            None,
            "200",
            json!({ "type": "object", "required": ["keys"], "additionalProperties": false, "properties": { "keys": { "type": "array", "items": key.clone() } } }),
            &["400", "401", "404", "422", "429"],
        ),
        o(
            "post",
            "/keys",
            "Create an API key (full key returned once)",
            true,
            vec![],
            Some(
                json!({ "type": "object", "required": ["service"], "additionalProperties": false, "properties": {
              "service": { "type": "string", "enum": ["seal", "grpc", "graphql"] },
              "network": { "type": "string", "enum": ["mainnet", "testnet"] },
              "access": { "type": "string", "enum": ["open", "permission"] },
              "source": { "type": "string", "enum": ["derived", "imported"] },
              "proc_group": { "type": "integer", "minimum": 0, "maximum": 7 } } }),
            ),
            "201",
            key.clone(),
            &["400", "401", "404", "409", "413", "422", "429"],
        ),
        o(
            "post",
            "/keys/{key_id}/regenerate",
            "Revoke a key and issue its replacement atomically",
            true,
            vec![key_param()],
            None,
            "201",
            key,
            &["400", "401", "404", "429"],
        ),
        o(
            "delete",
            "/keys/{key_id}",
            "Revoke a key",
            true,
            vec![key_param()],
            None,
            "204",
            Value::Null,
            &["400", "401", "404", "429"],
        ),
        o(
            "get",
            "/billing/balance",
            "Balance and monthly limit",
            true,
            vec![],
            None,
            "200",
            money.clone(),
            &["401", "429"],
        ),
        o(
            "post",
            "/billing/deposit",
            "Deposit into the escrow. Idempotent by idempotency_key (stored once execution starts; a replay returns the stored result with replayed=true; the same key with other parameters is 409); 503 means retry with the same key",
            true,
            vec![],
            Some(moves.clone()),
            "200",
            movement.clone(),
            &["400", "401", "409", "413", "429", "503"],
        ),
        o(
            "post",
            "/billing/withdraw",
            "Withdraw from the escrow (checked against the balance minus debits in flight; idempotent like deposit)",
            true,
            vec![],
            Some(moves),
            "200",
            movement,
            &["400", "401", "402", "409", "413", "429", "503"],
        ),
        o(
            "put",
            "/billing/limit",
            "Set the monthly spending limit ($100 to $50,000)",
            true,
            vec![],
            Some(
                json!({ "type": "object", "required": ["max_monthly_usd_cents"], "additionalProperties": false,
                       "properties": { "max_monthly_usd_cents": { "type": "integer", "format": "int64" } } }),
            ),
            "200",
            money,
            &["400", "401", "413", "422", "429"],
        ),
        o(
            "get",
            "/billing/invoices",
            "The caller's monthly invoices, newest first",
            true,
            vec![],
            None,
            "200",
            json!({ "type": "object", "required": ["invoices"], "additionalProperties": false, "properties": {
                "invoices": { "type": "array", "items": { "$ref": "#/components/schemas/Invoice" } } } }),
            &["401", "429"],
        ),
        o(
            "get",
            "/billing/invoices/{invoice_id}",
            "One invoice with its lines (usage lines name the settled range and the quantities they priced) and the charges that paid it",
            true,
            vec![
                json!({ "name": "invoice_id", "in": "path", "required": true, "schema": { "type": "integer", "format": "int64" } }),
            ],
            None,
            "200",
            json!({ "$ref": "#/components/schemas/InvoiceDetail" }),
            &["400", "401", "404", "429"],
        ),
        o(
            "get",
            "/billing/current",
            "The month to date: the draft invoice plus settled usage not billed yet (usage_source says which usage is counted)",
            true,
            vec![],
            None,
            "200",
            json!({ "$ref": "#/components/schemas/MonthToDate" }),
            &["401", "429"],
        ),
        o(
            "get",
            "/billing/transactions",
            "Escrow movements recorded in the ledger (newest first) and those still in flight",
            true,
            vec![
                json!({ "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }),
            ],
            None,
            "200",
            json!({ "$ref": "#/components/schemas/Transactions" }),
            &["400", "401", "429"],
        ),
        o(
            "get",
            "/stats/summary",
            "Usage of the last 24 hours (the current UTC hour and the 23 before it)",
            true,
            stats_params(false),
            None,
            "200",
            json!({ "$ref": "#/components/schemas/StatsSummary" }),
            &["400", "401", "429"],
        ),
        o(
            "get",
            "/stats/traffic",
            "Requests per bucket: billable, dropped, success, errors, status classes",
            true,
            stats_params(true),
            None,
            "200",
            series_schema("TrafficPoint"),
            &["400", "401", "429"],
        ),
        o(
            "get",
            "/stats/usage",
            "Billable usage per bucket (the numbers billing charges)",
            true,
            stats_params(true),
            None,
            "200",
            series_schema("UsagePoint"),
            &["400", "401", "429"],
        ),
        o(
            "get",
            "/stats/bandwidth",
            "Bytes per bucket",
            true,
            stats_params(true),
            None,
            "200",
            series_schema("BandwidthPoint"),
            &["400", "401", "429"],
        ),
        o(
            "get",
            "/stats/response-time",
            "Response time of billable requests per bucket (averages weighted by requests)",
            true,
            stats_params(true),
            None,
            "200",
            series_schema("ResponseTimePoint"),
            &["400", "401", "429"],
        ),
        o(
            "get",
            "/stats/live",
            "Usage pushed as server-sent events: `provisional` (LiveProvisional, the unsettled rows, at most once a second), \
             `settled` (LiveSettled, id = settlement sequence; reconnect with Last-Event-ID to replay what was missed), \
             `reset` (LiveReset), `end` (LiveEnd); `: keep-alive` comments. EventSource clients may pass \
             `access_token` and `last_event_id` as query parameters",
            true,
            vec![
                json!({ "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" },
                        "description": "the last settled event received: the stream replays the settled events after it" }),
                json!({ "name": "last_event_id", "in": "query", "required": false, "schema": { "type": "string" } }),
                json!({ "name": "access_token", "in": "query", "required": false, "schema": { "type": "string" },
                        "description": "the access token, for EventSource (which cannot send Authorization)" }),
            ],
            None,
            "200",
            json!({ "type": "string" }),
            &["400", "401", "429", "503"],
        ),
        o(
            "get",
            "/seal-keys",
            "The caller's Seal keys and what the seal service allows (1 key and 3 packages per key included)",
            true,
            vec![],
            None,
            "200",
            json!({ "$ref": "#/components/schemas/SealKeyList" }),
            &["401", "429"],
        ),
        o(
            "post",
            "/seal-keys",
            "Create a derived Seal key or import one; buys an extra key when the included one is used (cost-checked)",
            true,
            vec![],
            Some(json!({ "$ref": "#/components/schemas/SealKeyCreate" })),
            "201",
            json!({ "$ref": "#/components/schemas/SealKey" }),
            &["400", "401", "402", "404", "413", "429"],
        ),
        o(
            "delete",
            "/seal-keys/{seal_key_id}",
            "Delete a Seal key (its packages go with it; cost-checked: the pooled package allowance shrinks)",
            true,
            vec![seal_key_param()],
            None,
            "204",
            Value::Null,
            &["400", "401", "402", "404", "429"],
        ),
        o(
            "get",
            "/seal-keys/{seal_key_id}/packages",
            "The Sui packages a Seal key serves",
            true,
            vec![seal_key_param()],
            None,
            "200",
            json!({ "$ref": "#/components/schemas/SealPackages" }),
            &["400", "401", "404", "429"],
        ),
        o(
            "post",
            "/seal-keys/{seal_key_id}/packages",
            "Add a package to a Seal key; buys an extra package beyond 3 per key (cost-checked)",
            true,
            vec![seal_key_param()],
            Some(
                json!({ "type": "object", "required": ["package_id"], "additionalProperties": false, "properties": {
                "package_id": { "type": "string", "pattern": "^0x[0-9a-fA-F]{64}$" } } }),
            ),
            "201",
            json!({ "$ref": "#/components/schemas/SealPackages" }),
            &["400", "401", "402", "404", "413", "429"],
        ),
        o(
            "delete",
            "/seal-keys/{seal_key_id}/packages/{package_id}",
            "Remove a package from a Seal key",
            true,
            vec![
                seal_key_param(),
                json!({ "name": "package_id", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^0x[0-9a-fA-F]{64}$" } }),
            ],
            None,
            "204",
            Value::Null,
            &["400", "401", "404", "429"],
        ),
    ]
}

fn int64(description: &str) -> Value {
    if description.is_empty() {
        json!({ "type": "integer", "format": "int64" })
    } else {
        json!({ "type": "integer", "format": "int64", "description": description })
    }
}

/// The Seal-key schemas (issue 13), merged into `components.schemas`.
fn seal_schemas() -> Value {
    json!({
        "SealKey": { "type": "object", "additionalProperties": false, "required": [
                "seal_key_id", "name", "source", "network", "public_key", "derivation_index", "packages",
                "is_active", "created_at", "revoked_at"], "properties": {
            "seal_key_id": int64(""),
            "name": { "type": "string" },
            "source": { "type": "string", "enum": ["derived", "imported"] },
            "network": { "type": "string", "enum": ["mainnet", "testnet"] },
            "public_key": { "type": "string", "description": "96 bytes (BLS12-381 G2, compressed) as hex" },
            "derivation_index": { "type": "integer", "nullable": true, "description": "derived keys: the key server's derivation index" },
            "packages": { "type": "array", "items": { "type": "string" } },
            "is_active": { "type": "boolean" },
            "created_at": { "type": "string", "format": "date-time" },
            "revoked_at": { "type": "string", "format": "date-time", "nullable": true },
            "allowance": { "$ref": "#/components/schemas/SealAllowance" } } },
        "SealAllowance": { "type": "object", "additionalProperties": false, "required": [
                "active_keys", "included_keys", "purchased_keys", "packages", "included_packages_per_key",
                "purchased_packages", "extra_key_usd_cents_per_month", "extra_package_usd_cents_per_month"], "properties": {
            "active_keys": { "type": "integer" }, "included_keys": { "type": "integer" },
            "purchased_keys": { "type": "integer" }, "packages": { "type": "integer" },
            "included_packages_per_key": { "type": "integer" }, "purchased_packages": { "type": "integer" },
            "extra_key_usd_cents_per_month": int64(""), "extra_package_usd_cents_per_month": int64("") } },
        "SealKeyList": { "type": "object", "additionalProperties": false, "required": ["seal_keys", "allowance"], "properties": {
            "seal_keys": { "type": "array", "items": { "$ref": "#/components/schemas/SealKey" } },
            "allowance": { "$ref": "#/components/schemas/SealAllowance" } } },
        "SealKeyCreate": { "type": "object", "additionalProperties": false, "properties": {
            "name": { "type": "string", "maxLength": 64 },
            "network": { "type": "string", "enum": ["mainnet", "testnet"] },
            "source": { "type": "string", "enum": ["derived", "imported"] },
            "public_key": { "type": "string", "description": "imported: 192 hex digits" },
            "encrypted_private_key": { "type": "string", "description": "imported: the private key encrypted to the key server, base64 (at most 1024 bytes)" } } },
        "SealPackages": { "type": "object", "additionalProperties": false, "required": ["seal_key_id", "packages"], "properties": {
            "seal_key_id": int64(""),
            "packages": { "type": "array", "items": { "type": "string" } } } }
    })
}

/// The stats and live-tail schemas (issue 13), merged into `components.schemas`.
fn stats_schemas() -> Vec<(String, Value)> {
    let a = json!({
            "StatsSummary": { "type": "object", "additionalProperties": false, "required": [
                    "from", "to", "partial", "service", "network", "settled_before", "requests", "billable_requests",
                    "dropped_requests", "success", "client_errors", "server_errors", "status_2xx", "status_3xx",
                    "status_4xx", "status_5xx", "status_other", "total_bytes", "billable_bytes",
                    "avg_response_time_ms", "min_response_time_ms", "max_response_time_ms"], "properties": {
                "from": { "type": "string", "format": "date-time" },
                "to": { "type": "string", "format": "date-time", "description": "exclusive" },
                "partial": { "type": "boolean", "description": "includes numbers metering has not settled yet" },
                "service": { "type": "string", "nullable": true },
                "network": { "type": "string", "nullable": true },
                "settled_before": { "type": "string", "format": "date-time" },
                "requests": int64("traffic types 1–6 (served and dropped; stream rows are not requests)"),
                "billable_requests": int64("traffic types 1–2"),
                "dropped_requests": int64("traffic types 3–6"),
                "success": int64("billable with a 2xx status"),
                "client_errors": int64("billable with a 4xx status"),
                "server_errors": int64("billable with a status of 500 or more"),
                "status_2xx": int64("requests by status class"),
                "status_3xx": int64(""), "status_4xx": int64(""), "status_5xx": int64(""),
                "status_other": int64("1xx or no status"),
                "total_bytes": int64("every traffic type but 8 (stream close)"),
                "billable_bytes": int64("traffic types 1, 2 and 7"),
                "avg_response_time_ms": { "type": "number", "nullable": true, "description": "billable requests, weighted by repeat" },
                "min_response_time_ms": { "type": "integer", "nullable": true },
                "max_response_time_ms": { "type": "integer", "nullable": true } } },
            "TrafficPoint": { "type": "object", "additionalProperties": false, "required": [
                    "start", "partial", "requests", "billable_requests", "dropped_requests", "success", "client_errors",
                    "server_errors", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "status_other"], "properties": {
                "start": { "type": "string", "format": "date-time" }, "partial": { "type": "boolean" },
                "requests": int64(""), "billable_requests": int64(""), "dropped_requests": int64(""), "success": int64(""),
                "client_errors": int64(""), "server_errors": int64(""), "status_2xx": int64(""), "status_3xx": int64(""),
                "status_4xx": int64(""), "status_5xx": int64(""), "status_other": int64("") } },
            "UsagePoint": { "type": "object", "additionalProperties": false, "required": [
                    "start", "partial", "billable_requests", "billable_bytes"], "properties": {
                "start": { "type": "string", "format": "date-time" }, "partial": { "type": "boolean" },
                "billable_requests": int64(""), "billable_bytes": int64("") } },
            "BandwidthPoint": { "type": "object", "additionalProperties": false, "required": [
                    "start", "partial", "total_bytes", "billable_bytes"], "properties": {
                "start": { "type": "string", "format": "date-time" }, "partial": { "type": "boolean" },
                "total_bytes": int64(""), "billable_bytes": int64("") } },
            "ResponseTimePoint": { "type": "object", "additionalProperties": false, "required": [
                    "start", "partial", "billable_requests", "avg_response_time_ms", "min_response_time_ms",
                    "max_response_time_ms"], "properties": {
                "start": { "type": "string", "format": "date-time" }, "partial": { "type": "boolean" },
                "billable_requests": int64("the weight of the average"),
                "avg_response_time_ms": { "type": "number", "nullable": true },
                "min_response_time_ms": { "type": "integer", "nullable": true },
                "max_response_time_ms": { "type": "integer", "nullable": true } } }
    });
    let b = json!({
            "LiveRow": { "type": "object", "additionalProperties": false, "required": [
                    "minute", "service", "network", "requests", "billable_requests", "dropped_requests", "success",
                    "client_errors", "server_errors", "status_2xx", "status_3xx", "status_4xx", "status_5xx",
                    "total_bytes", "billable_bytes", "response_time_sum_ms", "avg_response_time_ms",
                    "min_response_time_ms", "max_response_time_ms"], "properties": {
                "minute": { "type": "string", "format": "date-time" },
                "service": { "type": "string" }, "network": { "type": "string" },
                "requests": int64(""), "billable_requests": int64(""), "dropped_requests": int64(""), "success": int64(""),
                "client_errors": int64(""), "server_errors": int64(""), "status_2xx": int64(""), "status_3xx": int64(""),
                "status_4xx": int64(""), "status_5xx": int64(""), "total_bytes": int64(""), "billable_bytes": int64(""),
                "response_time_sum_ms": int64("sum over billable requests; add these, not averages"),
                "avg_response_time_ms": { "type": "number", "nullable": true },
                "min_response_time_ms": { "type": "integer", "nullable": true },
                "max_response_time_ms": { "type": "integer", "nullable": true } } },
            "LiveProvisional": { "type": "object", "additionalProperties": false, "required": ["settled_before", "rows"],
                "description": "`provisional` event: every unsettled row of the caller; replaces the previous provisional view", "properties": {
                "settled_before": { "type": "string", "format": "date-time" },
                "rows": { "type": "array", "items": { "$ref": "#/components/schemas/LiveRow" } } } },
            "LiveSettled": { "type": "object", "additionalProperties": false, "required": ["seq", "settled_before", "rows"],
                "description": "`settled` event: what settlement `seq` added for the caller (final; add to what you have) — may be empty", "properties": {
                "seq": int64("the event id"),
                "settled_before": { "type": "string", "format": "date-time" },
                "rows": { "type": "array", "items": { "$ref": "#/components/schemas/LiveRow" } } } },
            "LiveReset": { "type": "object", "additionalProperties": false, "required": ["reason", "seq"],
                "description": "`reset` event: missed events cannot be replayed; reload the series", "properties": {
                "reason": { "type": "string", "enum": ["replay_unavailable", "unknown_event_id"] }, "seq": int64("") } },
            "LiveEnd": { "type": "object", "additionalProperties": false, "required": ["reason"],
                "description": "`end` event: the stream ends; reconnect with Last-Event-ID", "properties": {
                "reason": { "type": "string", "enum": ["shutdown", "max_duration", "unavailable"] } } }
    });
    let mut out = Vec::new();
    for v in [a, b] {
        if let Value::Object(m) = v {
            out.extend(m);
        }
    }
    out
}

fn components() -> Value {
    let invoice_props = json!({
        "id": { "type": "integer", "format": "int64" },
        "month": { "type": "string", "description": "YYYY-MM (UTC)" },
        "status": { "type": "string", "enum": ["draft", "pending", "paid", "failed", "void"] },
        "total_usd_cents": { "type": "integer", "format": "int64" },
        "paid_usd_cents": { "type": "integer", "format": "int64" },
        "due_usd_cents": { "type": "integer", "format": "int64" },
        "created_at": { "type": "string", "format": "date-time" },
        "finalized_at": { "type": "string", "format": "date-time", "nullable": true },
        "paid_at": { "type": "string", "format": "date-time", "nullable": true } });
    let mut detail_props = invoice_props.clone();
    detail_props["lines"] =
        json!({ "type": "array", "items": { "$ref": "#/components/schemas/InvoiceLine" } });
    detail_props["payments"] =
        json!({ "type": "array", "items": { "$ref": "#/components/schemas/Payment" } });
    let mut doc = json!({
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        "schemas": {
            "Error": { "type": "object", "required": ["error"], "additionalProperties": false, "properties": {
                "error": { "$ref": "#/components/schemas/ErrorBody" } } },
            "ErrorBody": { "type": "object", "required": ["code", "message"], "additionalProperties": false, "properties": {
                "code": { "type": "string", "enum": [
                    "invalid_request", "payload_too_large", "unauthorized", "invalid_signature", "invalid_nonce",
                    "not_found", "route_not_found", "unknown_service", "service_not_available", "invalid_config",
                    "request_timeout", "insufficient_balance", "monthly_limit_exceeded", "api_key_limit_reached",
                    "limit_out_of_range", "insufficient_escrow_funds", "idempotency_conflict", "rate_limited",
                    "stream_limit_reached", "unavailable", "internal"] },
                "message": { "type": "string" },
                "details": { "type": "object", "additionalProperties": { "type": "integer", "format": "int64" },
                             "description": "numbers that explain the refusal (all money in cents)" } } },
            "Tier": { "type": "string", "enum": ["starter", "pro", "enterprise"] },
            "ServiceName": { "type": "string", "enum": ["seal", "grpc", "graphql"] },
            "ServiceConfig": { "type": "object", "required": ["tier"], "additionalProperties": false, "properties": {
                "tier": { "$ref": "#/components/schemas/Tier" },
                "burst": { "type": "boolean" },
                "extra_api_keys": { "type": "integer", "minimum": 0, "maximum": 1000 },
                "extra_seal_keys": { "type": "integer", "minimum": 0, "maximum": 1000 },
                "extra_packages": { "type": "integer", "minimum": 0, "maximum": 1000 } } },
            "Service": { "type": "object", "additionalProperties": false, "required": [
                    "service", "tier", "is_enabled", "config", "monthly_price_usd_cents", "rate_limit_per_region",
                    "api_key_limit", "active_api_keys", "enabled_at", "disabled_at", "suspended",
                    "suspension_reason", "pending_change"], "properties": {
                "suspended": { "type": "boolean", "description": "enabled but suspended by billing (the vault leaves it out)" },
                "suspension_reason": { "allOf": [{ "$ref": "#/components/schemas/SuspensionReason" }], "nullable": true },
                "pending_change": { "type": "object", "nullable": true, "additionalProperties": false,
                    "description": "a downgrade scheduled for the 1st of next month (what was paid for stays in force until then)",
                    "required": ["config", "tier", "monthly_price_usd_cents", "effective"], "properties": {
                        "config": { "$ref": "#/components/schemas/ServiceConfig" },
                        "tier": { "$ref": "#/components/schemas/Tier" },
                        "monthly_price_usd_cents": { "type": "integer", "format": "int64" },
                        "effective": { "type": "string", "format": "date" } } },
                "service": { "$ref": "#/components/schemas/ServiceName" },
                "tier": { "$ref": "#/components/schemas/Tier" },
                "is_enabled": { "type": "boolean" },
                "config": { "$ref": "#/components/schemas/ServiceConfig" },
                "monthly_price_usd_cents": { "type": "integer", "format": "int64" },
                "rate_limit_per_region": { "type": "integer", "description": "guaranteed requests per second per region" },
                "api_key_limit": { "type": "integer" },
                "active_api_keys": { "type": "integer", "format": "int64" },
                "enabled_at": { "type": "string", "format": "date-time", "nullable": true },
                "disabled_at": { "type": "string", "format": "date-time", "nullable": true } } },
            "ApiKey": { "type": "object", "additionalProperties": false, "required": [
                    "key_id", "service", "preview", "fingerprint", "key_version", "network", "access", "source",
                    "proc_group", "is_active", "created_at", "revoked_at"], "properties": {
                "key_id": { "type": "integer", "format": "int64" },
                "service": { "$ref": "#/components/schemas/ServiceName" },
                "preview": { "type": "string" },
                "fingerprint": { "type": "integer", "format": "int64" },
                "key_version": { "type": "integer" },
                "network": { "type": "string", "enum": ["mainnet", "testnet"] },
                "access": { "type": "string", "enum": ["open", "permission"] },
                "source": { "type": "string", "enum": ["derived", "imported"] },
                "proc_group": { "type": "integer" },
                "is_active": { "type": "boolean" },
                "created_at": { "type": "string", "format": "date-time" },
                "revoked_at": { "type": "string", "format": "date-time", "nullable": true },
                "api_key": { "type": "string", "description": "full key; only in create/regenerate responses" },
                "replaces_key_id": { "type": "integer", "format": "int64", "description": "regenerate only: the revoked key" } } },
            "Balance": { "type": "object", "additionalProperties": false, "required": [
                    "balance_usd_cents", "max_monthly_usd_cents", "current_month_charged_usd_cents",
                    "last_month_charged_usd_cents", "current_month_start", "remaining_authorization_usd_cents"], "properties": {
                "balance_usd_cents": { "type": "integer", "format": "int64" },
                "max_monthly_usd_cents": { "type": "integer", "format": "int64" },
                "current_month_charged_usd_cents": { "type": "integer", "format": "int64" },
                "last_month_charged_usd_cents": { "type": "integer", "format": "int64" },
                "current_month_start": { "type": "string", "format": "date" },
                "remaining_authorization_usd_cents": { "type": "integer", "format": "int64" } } },
            "MoveRequest": { "type": "object", "required": ["amount_usd_cents"], "additionalProperties": false, "properties": {
                "amount_usd_cents": { "type": "integer", "format": "int64", "minimum": 1, "maximum": 100_000_000 },
                "idempotency_key": { "type": "string", "nullable": true, "minLength": 1, "maxLength": 64, "pattern": "^[!-~]+$" } } },
            "Movement": { "type": "object", "additionalProperties": false, "required": [
                    "tx_digest", "kind", "amount_usd_cents", "balance_usd_cents", "replayed"], "properties": {
                "tx_digest": { "type": "string" },
                "kind": { "type": "string", "enum": ["deposit", "withdraw"] },
                "amount_usd_cents": { "type": "integer", "format": "int64" },
                "balance_usd_cents": { "type": "integer", "format": "int64" },
                "replayed": { "type": "boolean", "description": "true: this idempotency_key was already applied" } } },
            "Quote": { "type": "object", "additionalProperties": false, "required": [
                    "service", "monthly_usd_cents", "current_monthly_usd_cents", "estimated_cost_usd_cents",
                    "rate_limit_per_region", "breakdown", "allowed", "refusal"], "properties": {
                "service": { "$ref": "#/components/schemas/ServiceName" },
                "monthly_usd_cents": { "type": "integer", "format": "int64" },
                "current_monthly_usd_cents": { "type": "integer", "format": "int64" },
                "estimated_cost_usd_cents": { "type": "integer", "format": "int64" },
                "rate_limit_per_region": { "type": "integer", "description": "guaranteed requests per second per region of the proposed tier" },
                "breakdown": { "type": "object", "additionalProperties": false, "required": [
                        "tier_usd_cents", "burst_usd_cents", "extra_api_keys_usd_cents",
                        "extra_seal_keys_usd_cents", "extra_packages_usd_cents"], "properties": {
                    "tier_usd_cents": { "type": "integer", "format": "int64" },
                    "burst_usd_cents": { "type": "integer", "format": "int64" },
                    "extra_api_keys_usd_cents": { "type": "integer", "format": "int64" },
                    "extra_seal_keys_usd_cents": { "type": "integer", "format": "int64" },
                    "extra_packages_usd_cents": { "type": "integer", "format": "int64" } } },
                "allowed": { "type": "boolean" },
                "refusal": { "allOf": [{ "$ref": "#/components/schemas/ErrorBody" }], "nullable": true,
                             "description": "the error the change would get now (null when allowed)" } } },
            "Session": { "type": "object", "additionalProperties": false, "required": [
                    "accessToken", "tokenType", "expiresIn", "walletAddress"], "properties": {
                "accessToken": { "type": "string" }, "tokenType": { "type": "string", "enum": ["Bearer"] },
                "expiresIn": { "type": "integer", "description": "seconds" }, "walletAddress": { "type": "string" } } }
        }
    });
    let schemas = doc["schemas"].as_object_mut().expect("schemas");
    for (k, v) in stats_schemas() {
        schemas.insert(k, v);
    }
    if let Value::Object(m) = seal_schemas() {
        schemas.extend(m);
    }
    // The billing schemas (issue 11), in a second macro call: one json! of every schema
    // exceeds the macro's recursion limit.
    let billing = billing_schemas(invoice_props, detail_props);
    for (k, v) in billing.as_object().expect("object") {
        doc["schemas"][k] = v.clone();
    }
    doc
}

fn billing_schemas(invoice_props: Value, detail_props: Value) -> Value {
    json!({
            "SuspensionReason": { "type": "string", "enum": ["insufficient_balance", "monthly_limit_reached"] },
            "Suspension": { "type": "object", "additionalProperties": false, "required": ["reason", "since", "until"], "properties": {
                "reason": { "$ref": "#/components/schemas/SuspensionReason" },
                "since": { "type": "string", "format": "date-time" },
                "until": { "type": "string", "format": "date-time", "nullable": true,
                           "description": "monthly_limit_reached: the 1st of next month (unless the limit is raised)" } } },
            "Invoice": { "type": "object", "additionalProperties": false, "required": [
                    "id", "month", "status", "total_usd_cents", "paid_usd_cents", "due_usd_cents", "created_at",
                    "finalized_at", "paid_at"], "properties": invoice_props },
            "InvoiceDetail": { "type": "object", "additionalProperties": false, "required": [
                    "id", "month", "status", "total_usd_cents", "paid_usd_cents", "due_usd_cents", "created_at",
                    "finalized_at", "paid_at", "lines", "payments"], "properties": detail_props },
            "InvoiceLine": { "type": "object", "additionalProperties": false, "required": [
                    "id", "kind", "service", "metric", "for_month", "description", "amount_usd_cents",
                    "quantity_before", "quantity_after", "usage_from", "usage_to", "created_at"], "properties": {
                "id": { "type": "integer", "format": "int64" },
                "kind": { "type": "string", "enum": ["fee", "usage", "adjustment", "credit"] },
                "service": { "allOf": [{ "$ref": "#/components/schemas/ServiceName" }], "nullable": true },
                "metric": { "type": "string", "nullable": true, "enum": ["requests", "bandwidth"] },
                "for_month": { "type": "string", "description": "YYYY-MM: the month the fee or usage belongs to (earlier than the invoice's for adjustments)" },
                "description": { "type": "string" },
                "amount_usd_cents": { "type": "integer", "format": "int64" },
                "quantity_before": { "type": "integer", "format": "int64", "nullable": true, "description": "usage: the month's cumulative quantity already priced" },
                "quantity_after": { "type": "integer", "format": "int64", "nullable": true, "description": "usage: the cumulative quantity this line brings the pricing to" },
                "usage_from": { "type": "string", "format": "date-time", "nullable": true },
                "usage_to": { "type": "string", "format": "date-time", "nullable": true },
                "created_at": { "type": "string", "format": "date-time" } } },
            "Payment": { "type": "object", "additionalProperties": false, "required": ["tx_digest", "amount_usd_cents", "at"], "properties": {
                "tx_digest": { "type": "string" },
                "amount_usd_cents": { "type": "integer", "format": "int64" },
                "at": { "type": "string", "format": "date-time" } } },
            "MonthToDate": { "type": "object", "additionalProperties": false, "required": [
                    "month", "invoice", "invoiced_usd_cents", "unbilled_usage_usd_cents", "month_to_date_usd_cents",
                    "usage", "usage_source", "settled_before"], "properties": {
                "month": { "type": "string" },
                "invoice": { "allOf": [{ "$ref": "#/components/schemas/Invoice" }], "nullable": true },
                "invoiced_usd_cents": { "type": "integer", "format": "int64" },
                "unbilled_usage_usd_cents": { "type": "integer", "format": "int64" },
                "month_to_date_usd_cents": { "type": "integer", "format": "int64" },
                "usage": { "type": "array", "items": { "type": "object", "additionalProperties": false,
                    "required": ["service", "requests", "bytes", "usage_usd_cents", "unbilled_usd_cents"], "properties": {
                        "service": { "$ref": "#/components/schemas/ServiceName" },
                        "requests": { "type": "integer", "format": "int64" },
                        "bytes": { "type": "integer", "format": "int64" },
                        "usage_usd_cents": { "type": "integer", "format": "int64" },
                        "unbilled_usd_cents": { "type": "integer", "format": "int64" } } } },
                "usage_source": { "type": "string", "enum": ["settled"], "description": "settled: the minutes still open in the aggregator are not counted yet" },
                "settled_before": { "type": "string", "format": "date-time", "nullable": true } } },
            "Transactions": { "type": "object", "additionalProperties": false, "required": ["transactions", "pending"], "properties": {
                "transactions": { "type": "array", "items": { "type": "object", "additionalProperties": false, "required": [
                        "tx_digest", "kind", "amount_usd_cents", "balance_after_usd_cents", "at", "invoice_id"], "properties": {
                    "tx_digest": { "type": "string" },
                    "kind": { "type": "string", "enum": ["deposit", "withdraw", "charge"] },
                    "amount_usd_cents": { "type": "integer", "format": "int64" },
                    "balance_after_usd_cents": { "type": "integer", "format": "int64" },
                    "at": { "type": "string", "format": "date-time" },
                    "invoice_id": { "type": "integer", "format": "int64", "nullable": true } } } },
                "pending": { "type": "array", "items": { "type": "object", "additionalProperties": false, "required": [
                        "kind", "amount_usd_cents", "since", "invoice_id"], "properties": {
                    "kind": { "type": "string", "enum": ["deposit", "withdraw", "charge"] },
                    "amount_usd_cents": { "type": "integer", "format": "int64" },
                    "since": { "type": "string", "format": "date-time" },
                    "invoice_id": { "type": "integer", "format": "int64", "nullable": true } } } } } }
    })
}

/// `post_keys_key_id_regenerate` for `POST /keys/{key_id}/regenerate`.
pub fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
    }
    id
}

/// OpenAPI links: a created key's id feeds regenerate and revoke (lets stateful fuzzers reach
/// existing keys instead of 404s).
fn key_links() -> Value {
    json!({
        "RegenerateKey": { "operationId": operation_id("post", "/keys/{key_id}/regenerate"),
                           "parameters": { "key_id": "$response.body#/key_id" } },
        "RevokeKey": { "operationId": operation_id("delete", "/keys/{key_id}"),
                       "parameters": { "key_id": "$response.body#/key_id" } }
    })
}

/// After an enable, the same service can be read, reconfigured, re-tiered, quoted, disabled.
fn service_links() -> Value {
    let mut links = Map::new();
    for (name, method, path) in [
        ("GetService", "get", "/services/{service}"),
        ("ConfigureService", "put", "/services/{service}/config"),
        ("ChangeTier", "put", "/services/{service}/tier"),
        ("QuoteService", "post", "/services/{service}/quote"),
        ("DisableService", "post", "/services/{service}/disable"),
    ] {
        links.insert(
            name.into(),
            json!({ "operationId": operation_id(method, path), "parameters": { "service": "$request.path.service" } }),
        );
    }
    Value::Object(links)
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for op in ops() {
        let mut responses = Map::new();
        let success = if op.response.is_null() {
            json!({ "description": "no content" })
        } else if op.path == "/stats/live" {
            json!({ "description": "an event stream (see the summary and the Live* schemas)", "content": { "text/event-stream": { "schema": op.response } } })
        } else {
            ok("success", op.response)
        };
        responses.insert(op.status.into(), success);
        if op.path.starts_with("/keys") && op.method == "post" {
            responses[op.status]["links"] = key_links();
        }
        if op.path == "/services/{service}/enable" {
            responses[op.status]["links"] = service_links();
        }
        for e in op.errors {
            responses.insert((*e).into(), err_ref());
        }
        let mut o = json!({ "summary": op.summary, "operationId": operation_id(op.method, op.path), "responses": responses });
        if !op.params.is_empty() {
            o["parameters"] = Value::Array(op.params);
        }
        if let Some(b) = op.body {
            o["requestBody"] = body(b);
        }
        o["security"] = if op.auth {
            json!([{ "bearer": [] }])
        } else {
            json!([])
        };
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Suiftly customer API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": components(),
    })
}
