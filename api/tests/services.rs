//! Services: every operation, the SPEC section 5 spend checks and their structured errors.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn unknown_and_reserved_services() {
    let t = test_app().await;
    let s = t.login(1).await;
    for path in ["/services/nope", "/services/nope/enable", "/services/SEAL"] {
        let r = if path.ends_with("enable") {
            t.post(path, &s.token, json!({})).await
        } else {
            t.get(path, &s.token).await
        };
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "unknown_service"),
            "{path}"
        );
    }
    for name in ["ssfn", "sealo"] {
        let r = t
            .post(&format!("/services/{name}/enable"), &s.token, json!({}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "service_not_available")
        );
        assert!(r.body["error"]["message"].as_str().unwrap().contains(name));
        let r = t
            .post(
                &format!("/services/{name}/quote"),
                &s.token,
                json!({ "tier": "pro" }),
            )
            .await;
        assert_eq!(r.code(), "service_not_available");
    }
    // A service never configured is 404 not_found.
    let r = t.get("/services/grpc", &s.token).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = t.post("/services/grpc/disable", &s.token, json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = t
        .put("/services/grpc/tier", &s.token, json!({ "tier": "pro" }))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn enable_without_balance_is_insufficient_balance_with_details() {
    let t = test_app().await;
    let s = t.login(2).await;
    t.deposit(&s, 500).await;
    let r = t.post("/services/seal/enable", &s.token, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_balance")
    );
    assert_eq!(
        r.body["error"]["details"],
        json!({ "current_balance_usd_cents": 500, "estimated_cost_usd_cents": 2000, "required_deposit_usd_cents": 1500 })
    );
    // Nothing was stored.
    assert_eq!(
        t.get("/services/seal", &s.token).await.status,
        StatusCode::NOT_FOUND
    );
    t.deposit(&s, 1500).await;
    let r = t.post("/services/seal/enable", &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["is_enabled"], true);
    assert_eq!(r.body["tier"], "starter");
    assert_eq!(r.body["monthly_price_usd_cents"], 2000);
    assert_eq!(r.body["api_key_limit"], 2);
    // Enabling again costs nothing more (idempotent). With less than the price left (the
    // balance equalled it so far), a re-enable priced again would be refused.
    let balance = |b: &serde_json::Value| b["balance_usd_cents"].as_i64().unwrap();
    let bal = balance(&t.get("/billing/balance", &s.token).await.body);
    if bal >= 2000 {
        let r = t
            .post(
                "/billing/withdraw",
                &s.token,
                json!({ "amount_usd_cents": bal - 1999 }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let before = t.get("/billing/balance", &s.token).await.body;
    assert!(balance(&before) < 2000, "{before}");
    let r = t.post("/services/seal/enable", &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["is_enabled"], true);
    assert_eq!(r.body["tier"], "starter");
    assert_eq!(
        t.get("/billing/balance", &s.token).await.body,
        before,
        "nothing charged or reserved"
    );
}

#[tokio::test]
async fn upgrade_over_the_monthly_limit_is_refused_with_details() {
    let t = test_app().await;
    let s = t.login(3).await;
    t.deposit(&s, 100_000).await;
    assert_eq!(
        t.post("/services/grpc/enable", &s.token, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    // Simulate this month's charges (the billing cycle writes this column).
    t.db.execute(
        "UPDATE customers SET current_month_charged_usd_cents = 9000, max_monthly_usd_cents = 10000 WHERE customer_id = $1",
        &[&s.customer_id],
    )
    .await
    .unwrap();
    // starter -> enterprise costs 6000 more: 9000 + 6000 > 10000.
    let r = t
        .put(
            "/services/grpc/tier",
            &s.token,
            json!({ "tier": "enterprise" }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYMENT_REQUIRED, "monthly_limit_exceeded")
    );
    assert_eq!(
        r.body["error"]["details"],
        json!({
            "max_monthly_usd_cents": 10000,
            "current_month_charged_usd_cents": 9000,
            "estimated_cost_usd_cents": 6000,
            "remaining_authorization_usd_cents": 1000
        })
    );
    assert_eq!(
        t.get("/services/grpc", &s.token).await.body["tier"],
        "starter"
    );
    // A downgrade-free change that fits: starter -> pro costs 2000, still too much; raising the
    // limit lets it through.
    let r = t
        .put(
            "/billing/limit",
            &s.token,
            json!({ "max_monthly_usd_cents": 20000 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .put(
            "/services/grpc/tier",
            &s.token,
            json!({ "tier": "enterprise" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["tier"], "enterprise");
    assert_eq!(r.body["rate_limit_per_region"], 2000);
}

#[tokio::test]
async fn downgrades_and_disable_never_need_money() {
    let t = test_app().await;
    let s = t.login(4).await;
    t.deposit(&s, 8_000).await;
    let r = t
        .put(
            "/services/graphql/config",
            &s.token,
            json!({ "tier": "enterprise" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Configuring a disabled service costs nothing; enabling it does.
    assert_eq!(r.body["is_enabled"], false);
    assert_eq!(
        t.post("/services/graphql/enable", &s.token, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let w = t
        .post(
            "/billing/withdraw",
            &s.token,
            json!({ "amount_usd_cents": 8_000 }),
        )
        .await;
    assert_eq!(w.status, StatusCode::OK, "{:?}", w.body);
    let r = t
        .put(
            "/services/graphql/tier",
            &s.token,
            json!({ "tier": "starter" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = t
        .post("/services/graphql/disable", &s.token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["is_enabled"], false);
    assert!(r.body["disabled_at"].is_string());
    // Re-enabling now needs money again.
    let r = t
        .post("/services/graphql/enable", &s.token, json!({}))
        .await;
    assert_eq!(r.code(), "insufficient_balance");
}

#[tokio::test]
async fn config_changes_are_priced_and_validated() {
    let t = test_app().await;
    let s = t.login(5).await;
    t.deposit(&s, 4_000).await;
    assert_eq!(
        t.post("/services/seal/enable", &s.token, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    // Burst is not on starter.
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "starter", "burst": true }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config")
    );
    // Seal extras only on seal.
    let r = t
        .put(
            "/services/grpc/config",
            &s.token,
            json!({ "tier": "pro", "extra_packages": 1 }),
        )
        .await;
    assert_eq!(r.code(), "invalid_config");
    // Unknown fields and bad tiers are 400 with a JSON body.
    let r = t
        .put("/services/seal/config", &s.token, json!({ "tier": "gold" }))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "pro", "colour": 1 }),
        )
        .await;
    assert_eq!(r.code(), "invalid_request");
    // 2000 -> 2000 + 2 extra keys (200) + 1 seal key (500) = 2700: costs 700, balance 2000 left.
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "starter", "extra_api_keys": 2, "extra_seal_keys": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["monthly_price_usd_cents"], 2700);
    assert_eq!(r.body["api_key_limit"], 4);
    // 2700 -> 8000 + 1000 burst costs 6300 > balance 4000.
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "enterprise", "burst": true }),
        )
        .await;
    assert_eq!(r.code(), "insufficient_balance");
    assert_eq!(r.body["error"]["details"]["estimated_cost_usd_cents"], 6300);
}

#[tokio::test]
async fn quote_prices_a_proposed_config() {
    let t = test_app().await;
    let s = t.login(6).await;
    t.deposit(&s, 3_000).await;
    let r = t
        .post(
            "/services/seal/quote",
            &s.token,
            json!({ "tier": "pro", "burst": true, "extra_api_keys": 3, "extra_packages": 2 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["monthly_usd_cents"], 4000 + 1000 + 300 + 200);
    assert_eq!(r.body["breakdown"]["burst_usd_cents"], 1000);
    assert_eq!(r.body["allowed"], false);
    assert_eq!(r.body["refusal"]["code"], "insufficient_balance");
    assert_eq!(
        r.body["refusal"]["details"]["required_deposit_usd_cents"],
        2500
    );
    let r = t
        .post(
            "/services/seal/quote",
            &s.token,
            json!({ "tier": "starter" }),
        )
        .await;
    assert_eq!(r.body["allowed"], true);
    assert_eq!(r.body["refusal"], json!(null));
    // Quotes write nothing.
    assert_eq!(
        t.get("/services", &s.token).await.body["services"],
        json!([])
    );
    let r = t
        .post(
            "/services/seal/quote",
            &s.token,
            json!({ "tier": "starter", "burst": true }),
        )
        .await;
    assert_eq!(r.code(), "invalid_config");
}

#[tokio::test]
async fn another_customers_service_is_not_visible() {
    let t = test_app().await;
    let a = t.login(7).await;
    let b = t.login(8).await;
    t.deposit(&a, 10_000).await;
    assert_eq!(
        t.post("/services/seal/enable", &a.token, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    // b sees nothing of a's service: 404, not 403.
    let r = t.get("/services/seal", &b.token).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        t.get("/services", &b.token).await.body["services"],
        json!([])
    );
    let r = t.post("/services/seal/disable", &b.token, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.get("/services/seal", &a.token).await.body["is_enabled"],
        true
    );
    // b's money state is b's own: enabling needs b's balance.
    assert_eq!(
        t.post("/services/seal/enable", &b.token, json!({}))
            .await
            .code(),
        "insufficient_balance"
    );
    let list = t.get("/services", &a.token).await;
    assert_eq!(list.body["services"].as_array().unwrap().len(), 1);
    assert!(
        !list.body.to_string().contains(&a.customer_id.to_string()),
        "customer ids are not echoed"
    );
}
