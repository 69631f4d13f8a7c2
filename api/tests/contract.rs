//! The contract between the API and the dashboard.
//!
//! The dashboard's TypeScript types are generated from `webapp/src/api/openapi.json`, so:
//! 1. that file must be exactly the document the API serves at `/openapi.json` (regenerate it
//!    with `SUIFTLY_UPDATE_OPENAPI=1 cargo test -p suiftly-api --test contract`), and
//! 2. the document must tell the truth: every response of a walk through the API (the
//!    dashboard's flows, the refusals included) is checked against its documented schema —
//!    required fields present, no undocumented field where the schema is closed, types and
//!    enums right. A field the server adds, drops or renames fails here, and once the snapshot
//!    is regenerated, the dashboard's `tsc --noEmit` shows every place that must follow.

mod common;

use std::path::PathBuf;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../webapp/src/api/openapi.json")
}

#[tokio::test]
async fn dashboard_snapshot_is_the_served_document() {
    let t = test_app().await;
    let served = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(served.status, StatusCode::OK);
    let path = snapshot_path();
    if std::env::var_os("SUIFTLY_UPDATE_OPENAPI").is_some() {
        let mut text = serde_json::to_string_pretty(&served.body).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
    )
    .unwrap();
    assert!(
        committed == served.body,
        "{} differs from the served /openapi.json: regenerate it with \
         `SUIFTLY_UPDATE_OPENAPI=1 cargo test -p suiftly-api --test contract`, then make \
         the dashboard follow (`cd webapp && npm run typecheck`)",
        path.display()
    );
}

/// A minimal OpenAPI 3.0 schema checker for the subset the document uses.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {r}");
        return check(doc, target, v, at, errs);
    }
    if v.is_null() {
        if schema["nullable"] != json!(true) {
            errs.push(format!("{at}: null but not nullable"));
        }
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, v, at, errs);
        }
    }
    let ok = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(other) => panic!("schema type {other} not handled"),
    };
    if !ok {
        errs.push(format!("{at}: {v} is not a {}", schema["type"]));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!("{at}: {v} not in {e:?}"));
    }
    if let Some(items) = schema.get("items") {
        for (i, item) in v.as_array().unwrap().iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), errs);
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().unwrap();
            if !obj.contains_key(req) {
                errs.push(format!("{at}: required field {req} missing"));
            }
        }
        for (k, val) in obj {
            let sub = props.and_then(|p| p.get(k));
            match (sub, schema.get("additionalProperties")) {
                (Some(s), _) => check(doc, s, val, &format!("{at}.{k}"), errs),
                (None, Some(Value::Bool(false))) => {
                    errs.push(format!("{at}: undocumented field {k}"))
                }
                (None, Some(extra)) if extra.is_object() => {
                    check(doc, extra, val, &format!("{at}.{k}"), errs)
                }
                _ => {}
            }
        }
    }
}

struct Walk {
    t: TestApp,
    doc: Value,
    checked: Vec<String>,
}

impl Walk {
    /// Calls the API and checks the response against the schema documented for
    /// (template, method, status).
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let r = self.t.call(method.clone(), path, token, body).await;
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(!op.is_null(), "{method} {template} is not documented");
        let resp = &op["responses"][r.status.as_str()];
        assert!(
            !resp.is_null(),
            "{method} {path} answered {} which is not documented: {}",
            r.status,
            r.body
        );
        match resp["content"]["application/json"].get("schema") {
            Some(schema) => {
                let mut errs = Vec::new();
                check(&self.doc, schema, &r.body, "body", &mut errs);
                assert!(
                    errs.is_empty(),
                    "{method} {path} -> {}: {errs:#?}\n{}",
                    r.status,
                    r.body
                );
            }
            None => assert!(r.body.is_null(), "{method} {path}: undocumented body"),
        }
        self.checked
            .push(format!("{} {template} {}", method, r.status.as_u16()));
        r.body
    }
}

#[tokio::test]
async fn every_response_of_the_dashboard_flows_matches_its_documented_schema() {
    let t = test_app().await;
    let doc = suiftly_api::openapi::document();
    let s = t.login(7).await;
    let mut w = Walk {
        t,
        doc,
        checked: Vec::new(),
    };
    let tok = Some(s.token.as_str());
    use Method as M;

    w.call(M::GET, "/health", "/health", None, None).await;
    let c = w
        .call(
            M::POST,
            "/auth/connect",
            "/auth/connect",
            None,
            Some(json!({ "walletAddress": s.address })),
        )
        .await;
    assert!(c["nonce"].is_string());
    w.call(M::GET, "/services", "/services", None, None).await; // 401
    w.call(M::GET, "/services", "/services", tok, None).await;
    w.call(M::GET, "/billing/balance", "/billing/balance", tok, None)
        .await;
    // Refusals with their structured details.
    let q = w
        .call(
            M::POST,
            "/services/{service}/quote",
            "/services/seal/quote",
            tok,
            Some(json!({ "tier": "pro", "burst": true })),
        )
        .await;
    assert_eq!(q["allowed"], json!(false));
    assert_eq!(q["refusal"]["code"], json!("insufficient_balance"));
    w.call(
        M::POST,
        "/services/{service}/enable",
        "/services/seal/enable",
        tok,
        None,
    )
    .await; // 402
    w.call(
        M::POST,
        "/billing/withdraw",
        "/billing/withdraw",
        tok,
        Some(json!({ "amount_usd_cents": 100 })),
    )
    .await; // 402
    w.call(
        M::PUT,
        "/billing/limit",
        "/billing/limit",
        tok,
        Some(json!({ "max_monthly_usd_cents": 1 })),
    )
    .await; // 422
    w.call(M::GET, "/services/{service}", "/services/ssfn", tok, None)
        .await; // 422
    // Money in, then every successful shape.
    let d = w
        .call(
            M::POST,
            "/billing/deposit",
            "/billing/deposit",
            tok,
            Some(json!({ "amount_usd_cents": 50_000, "idempotency_key": "contract-1" })),
        )
        .await;
    assert_eq!(d["balance_usd_cents"], json!(50_000));
    w.call(
        M::POST,
        "/billing/withdraw",
        "/billing/withdraw",
        tok,
        Some(json!({ "amount_usd_cents": 1_000 })),
    )
    .await;
    w.call(
        M::PUT,
        "/billing/limit",
        "/billing/limit",
        tok,
        Some(json!({ "max_monthly_usd_cents": 30_000 })),
    )
    .await;
    let q = w
        .call(
            M::POST,
            "/services/{service}/quote",
            "/services/seal/quote",
            tok,
            Some(json!({ "tier": "pro", "burst": true, "extra_packages": 2 })),
        )
        .await;
    assert_eq!(q["allowed"], json!(true));
    assert!(q["refusal"].is_null());
    w.call(
        M::POST,
        "/services/{service}/enable",
        "/services/seal/enable",
        tok,
        None,
    )
    .await;
    w.call(
        M::PUT,
        "/services/{service}/tier",
        "/services/seal/tier",
        tok,
        Some(json!({ "tier": "pro" })),
    )
    .await;
    w.call(
        M::PUT,
        "/services/{service}/config",
        "/services/seal/config",
        tok,
        Some(json!({ "tier": "pro", "burst": true, "extra_api_keys": 1 })),
    )
    .await;
    w.call(M::GET, "/services/{service}", "/services/seal", tok, None)
        .await;
    let k = w
        .call(
            M::POST,
            "/keys",
            "/keys",
            tok,
            Some(json!({ "service": "seal", "network": "testnet" })),
        )
        .await;
    assert!(k["api_key"].is_string());
    let id = k["key_id"].as_i64().unwrap();
    let k2 = w
        .call(
            M::POST,
            "/keys/{key_id}/regenerate",
            &format!("/keys/{id}/regenerate"),
            tok,
            None,
        )
        .await;
    assert_eq!(k2["replaces_key_id"], json!(id));
    w.call(M::GET, "/keys", "/keys?include_revoked=true", tok, None)
        .await;
    let id2 = k2["key_id"].as_i64().unwrap();
    w.call(
        M::DELETE,
        "/keys/{key_id}",
        &format!("/keys/{id2}"),
        tok,
        None,
    )
    .await;
    w.call(
        M::DELETE,
        "/keys/{key_id}",
        &format!("/keys/{id2}"),
        tok,
        None,
    )
    .await; // 404
    w.call(
        M::POST,
        "/services/{service}/disable",
        "/services/seal/disable",
        tok,
        None,
    )
    .await;
    w.call(M::GET, "/services", "/services", tok, None).await;
    // Billing views (issue 11): an invoice as the manager writes it, then every view.
    let iid: i64 = w
        .t
        .db
        .query_one(
            "INSERT INTO invoices (customer_id, month, epoch) VALUES ($1, '2026-11-01', 1) RETURNING invoice_id",
            &[&s.customer_id],
        )
        .await
        .unwrap()
        .get(0);
    w.t.db
        .execute(
            "INSERT INTO invoice_lines (invoice_id, line_key, kind, service_type, metric, for_month, amount_cents,
                 quantity_before, quantity_after, usage_from, usage_to, description, epoch)
             VALUES ($1, 'k', 'usage', 1, 'requests', '2026-11-01', 5, 0, 500, '2026-11-01', '2026-11-02', 'd', 1)",
            &[&iid],
        )
        .await
        .unwrap();
    w.call(M::GET, "/billing/invoices", "/billing/invoices", tok, None)
        .await;
    w.call(
        M::GET,
        "/billing/invoices/{invoice_id}",
        &format!("/billing/invoices/{iid}"),
        tok,
        None,
    )
    .await;
    w.call(M::GET, "/billing/current", "/billing/current", tok, None)
        .await;
    w.call(
        M::GET,
        "/billing/transactions",
        "/billing/transactions",
        tok,
        None,
    )
    .await;
    // What the dashboard's billing page asks besides: the ledger with its page size, a
    // missing invoice (its error state), and the account's suspension on /services.
    let txs = w
        .call(
            M::GET,
            "/billing/transactions",
            "/billing/transactions?limit=50",
            tok,
            None,
        )
        .await;
    assert!(!txs["transactions"].as_array().unwrap().is_empty(), "{txs}");
    w.call(
        M::GET,
        "/billing/invoices/{invoice_id}",
        &format!("/billing/invoices/{}", iid + 1000),
        tok,
        None,
    )
    .await;
    w.t.db
        .execute(
            "UPDATE customers SET suspension_reason = 'monthly_limit_reached', suspended_at = now(),
                 suspended_until = date_trunc('month', now()) + interval '1 month' WHERE customer_id = $1",
            &[&s.customer_id],
        )
        .await
        .unwrap();
    let v = w.call(M::GET, "/services", "/services", tok, None).await;
    assert_eq!(v["suspension"]["reason"], "monthly_limit_reached", "{v}");
    // Refresh and logout (the cookie flows).
    let r = w.t.with_cookie("/auth/refresh", &s.refresh_cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut errs = Vec::new();
    check(
        &w.doc,
        &json!({ "$ref": "#/components/schemas/Session" }),
        &r.body,
        "refresh",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(w.checked.len(), 32, "{:?}", w.checked);
}

#[test]
fn the_checker_catches_drift() {
    let doc = suiftly_api::openapi::document();
    let svc = json!({ "$ref": "#/components/schemas/Balance" });
    let good = json!({
        "balance_usd_cents": 1, "max_monthly_usd_cents": 2, "current_month_charged_usd_cents": 0,
        "last_month_charged_usd_cents": 0, "current_month_start": "2026-11-01",
        "remaining_authorization_usd_cents": 2 });
    let mut errs = Vec::new();
    check(&doc, &svc, &good, "b", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    let mut extra = good.clone();
    extra["surprise"] = json!(1);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("balance_usd_cents");
    let mut float = good.clone();
    float["balance_usd_cents"] = json!(1.5);
    for bad in [extra, missing, float] {
        let mut errs = Vec::new();
        check(&doc, &svc, &bad, "b", &mut errs);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
    }
}

/// Issue 13's routes (stats, Seal keys) through the same schema check: the dashboard's usage
/// page and Seal-key page read these shapes.
#[tokio::test]
async fn stats_and_seal_key_responses_match_their_documented_schemas() {
    let t = test_app().await;
    let doc = suiftly_api::openapi::document();
    let s = t.login(8).await;
    // Settled data for the caller so the series have non-zero points.
    t.db.batch_execute(&format!(
        "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before, settlement_seq)
         VALUES (1, 0, 0, '2026-11-26 11:30:00+00', 3);
         INSERT INTO stats_per_hour (bucket, customer_id, service_type, network, guaranteed_success_count,
             burst_success_count, dropped_count, client_error_count, server_error_count, billable_requests,
             success_count, avg_response_time_ms, min_response_time_ms, max_response_time_ms,
             response_time_sum_ms, total_bytes, billable_bytes, status_2xx_count)
         VALUES ('2026-11-26 10:00:00+00', {0}, 2, 1, 5, 1, 2, 0, 0, 6, 6, 10.0, 1, 20, 60, 1000, 900, 6);
         INSERT INTO stats_per_min (bucket, customer_id, service_type, network, traffic_type, status_code,
             request_count, total_bytes, avg_response_time_ms, min_response_time_ms, max_response_time_ms,
             response_time_sum_ms)
         VALUES ('2026-11-26 11:05:00+00', {0}, 2, 1, 1, 200, 4, 40, 5.0, 5, 5, 20);",
        s.customer_id
    ))
    .await
    .unwrap();
    let mut w = Walk {
        t,
        doc,
        checked: Vec::new(),
    };
    let tok = Some(s.token.as_str());
    use Method as M;
    let sm = w
        .call(M::GET, "/stats/summary", "/stats/summary", tok, None)
        .await;
    assert_eq!(sm["requests"], json!(6 + 2 + 4));
    assert_eq!(sm["partial"], json!(true));
    for (template, path) in [
        ("/stats/traffic", "/stats/traffic"),
        ("/stats/usage", "/stats/usage?range=7d&service=grpc"),
        (
            "/stats/bandwidth",
            "/stats/bandwidth?range=30d&interval=day",
        ),
        (
            "/stats/response-time",
            "/stats/response-time?network=mainnet",
        ),
        ("/stats/usage", "/stats/usage?period=2026-10"),
    ] {
        let v = w.call(M::GET, template, path, tok, None).await;
        assert!(!v["points"].as_array().unwrap().is_empty(), "{path}: {v}");
    }
    w.call(
        M::GET,
        "/stats/traffic",
        "/stats/traffic?range=1y",
        tok,
        None,
    )
    .await; // 400
    w.call(M::GET, "/stats/summary", "/stats/summary", None, None)
        .await; // 401
    w.call(M::GET, "/stats/live", "/stats/live", tok, None)
        .await; // 503: no live source here

    w.t.deposit(&s, 10_000).await;
    w.t.post("/services/seal/enable", &s.token, json!({})).await;
    w.call(M::GET, "/seal-keys", "/seal-keys", tok, None).await;
    let k = w
        .call(
            M::POST,
            "/seal-keys",
            "/seal-keys",
            tok,
            Some(json!({ "name": "k" })),
        )
        .await;
    let id = k["seal_key_id"].as_i64().unwrap();
    let pkg = format!("0x{}", "ab".repeat(32));
    w.call(
        M::POST,
        "/seal-keys/{seal_key_id}/packages",
        &format!("/seal-keys/{id}/packages"),
        tok,
        Some(json!({ "package_id": pkg })),
    )
    .await;
    w.call(
        M::GET,
        "/seal-keys/{seal_key_id}/packages",
        &format!("/seal-keys/{id}/packages"),
        tok,
        None,
    )
    .await;
    w.call(
        M::DELETE,
        "/seal-keys/{seal_key_id}/packages/{package_id}",
        &format!("/seal-keys/{id}/packages/{pkg}"),
        tok,
        None,
    )
    .await;
    w.call(M::GET, "/seal-keys", "/seal-keys", tok, None).await;
    w.call(
        M::DELETE,
        "/seal-keys/{seal_key_id}",
        &format!("/seal-keys/{id}"),
        tok,
        None,
    )
    .await;
    w.call(
        M::DELETE,
        "/seal-keys/{seal_key_id}",
        &format!("/seal-keys/{id}"),
        tok,
        None,
    )
    .await; // 404
    assert_eq!(w.checked.len(), 17, "{:?}", w.checked);
}
