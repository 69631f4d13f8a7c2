//! Billing endpoints over the mock escrow.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn balance_starts_at_defaults() {
    let t = test_app().await;
    let s = t.login(1).await;
    let r = t.get("/billing/balance", &s.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["balance_usd_cents"], 0);
    assert_eq!(r.body["max_monthly_usd_cents"], 200_000);
    assert_eq!(r.body["current_month_charged_usd_cents"], 0);
    assert_eq!(r.body["remaining_authorization_usd_cents"], 200_000);
    assert_eq!(r.body["current_month_start"], "2026-11-01");
}

#[tokio::test]
async fn deposit_is_idempotent_by_key_and_recorded_once() {
    let t = test_app().await;
    let s = t.login(2).await;
    let body = json!({ "amount_usd_cents": 5_000, "idempotency_key": "dep-1" });
    let a = t.post("/billing/deposit", &s.token, body.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["balance_usd_cents"], 5_000);
    assert_eq!(a.body["replayed"], false);
    let b = t.post("/billing/deposit", &s.token, body).await;
    assert_eq!(b.body["tx_digest"], a.body["tx_digest"]);
    assert_eq!(b.body["replayed"], true);
    assert_eq!(b.body["balance_usd_cents"], 5_000);
    assert_eq!(t.escrow.balance_now(s.customer_id), 5_000);
    let n: i64 =
        t.db.query_one("SELECT count(*) FROM escrow_transactions", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1);
    // Same key, different amount: conflict, nothing moves.
    let r = t
        .post(
            "/billing/deposit",
            &s.token,
            json!({ "amount_usd_cents": 1, "idempotency_key": "dep-1" }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );
    assert_eq!(
        t.get("/billing/balance", &s.token).await.body["balance_usd_cents"],
        5_000
    );
}

#[tokio::test]
async fn withdraw_checks_the_escrow_balance() {
    let t = test_app().await;
    let s = t.login(3).await;
    t.deposit(&s, 3_000).await;
    let r = t
        .post(
            "/billing/withdraw",
            &s.token,
            json!({ "amount_usd_cents": 3_001 }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_escrow_funds")
    );
    assert_eq!(
        r.body["error"]["details"],
        json!({ "balance_usd_cents": 3_000, "requested_usd_cents": 3_001 })
    );
    let r = t
        .post(
            "/billing/withdraw",
            &s.token,
            json!({ "amount_usd_cents": 1_000 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["balance_usd_cents"], 2_000);
    assert_eq!(r.body["kind"], "withdraw");
    assert!(r.body["tx_digest"].as_str().unwrap().starts_with("0x"));
    let kinds: Vec<String> =
        t.db.query("SELECT kind FROM escrow_transactions ORDER BY tx_id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(kinds, ["deposit", "withdraw"]);
}

#[tokio::test]
async fn amounts_and_keys_are_validated() {
    let t = test_app().await;
    let s = t.login(4).await;
    for amount in [0i64, -5, 100_000_001] {
        let r = t
            .post(
                "/billing/deposit",
                &s.token,
                json!({ "amount_usd_cents": amount }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{amount}"
        );
    }
    let r = t
        .post(
            "/billing/deposit",
            &s.token,
            json!({ "amount_usd_cents": 1, "idempotency_key": "" }),
        )
        .await;
    assert_eq!(r.code(), "invalid_request");
    let r = t
        .post(
            "/billing/deposit",
            &s.token,
            json!({ "amount_usd_cents": 1.5 }),
        )
        .await;
    assert_eq!(r.code(), "invalid_request");
    let r = t.post("/billing/deposit", &s.token, json!({})).await;
    assert_eq!(r.code(), "invalid_request");
}

#[tokio::test]
async fn monthly_limit_min_and_max() {
    let t = test_app().await;
    let s = t.login(5).await;
    for bad in [9_999i64, 5_000_001, 0] {
        let r = t
            .put(
                "/billing/limit",
                &s.token,
                json!({ "max_monthly_usd_cents": bad }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "limit_out_of_range")
        );
        assert_eq!(
            r.body["error"]["details"],
            json!({ "min_usd_cents": 10_000, "max_usd_cents": 5_000_000 })
        );
    }
    for good in [10_000i64, 5_000_000, 250_000] {
        let r = t
            .put(
                "/billing/limit",
                &s.token,
                json!({ "max_monthly_usd_cents": good }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["max_monthly_usd_cents"], good);
    }
}

#[tokio::test]
async fn money_is_per_customer() {
    let t = test_app().await;
    let a = t.login(6).await;
    let b = t.login(7).await;
    let r = t
        .post(
            "/billing/deposit",
            &a.token,
            json!({ "amount_usd_cents": 1_234, "idempotency_key": "a-dep" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        t.get("/billing/balance", &b.token).await.body["balance_usd_cents"],
        0
    );
    // b cannot withdraw a's money, even with a's idempotency key: keys are per customer, so
    // the key neither replays a's deposit for b nor reaches a's escrow.
    for body in [
        json!({ "amount_usd_cents": 1_000, "idempotency_key": "a-dep" }),
        json!({ "amount_usd_cents": 1_000 }),
    ] {
        let r = t.post("/billing/withdraw", &b.token, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::PAYMENT_REQUIRED, "insufficient_escrow_funds"),
            "{body}: {:?}",
            r.body
        );
    }
    // b's own deposit with the same key is a new deposit, not a replay of a's.
    let r = t
        .post(
            "/billing/deposit",
            &b.token,
            json!({ "amount_usd_cents": 1_234, "idempotency_key": "a-dep" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["replayed"], false);
    assert_eq!(t.escrow.balance_now(b.customer_id), 1_234);
    assert_eq!(t.escrow.balance_now(a.customer_id), 1_234);
    assert_eq!(
        t.get("/billing/balance", &a.token).await.body["balance_usd_cents"],
        1_234
    );
}

#[tokio::test]
async fn client_keys_cannot_collide_with_system_nonces() {
    use suiftly_billing::Escrow;
    let t = test_app().await;
    let s = t.login(8).await;
    // A movement the system made on the escrow with its own nonce (e.g. a billing charge).
    t.escrow
        .deposit(s.customer_id, 700, "startup-reseed")
        .await
        .unwrap();
    let r = t
        .post(
            "/billing/deposit",
            &s.token,
            json!({ "amount_usd_cents": 700, "idempotency_key": "startup-reseed" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["replayed"], false,
        "a new deposit, not the system's transaction"
    );
    assert_eq!(t.escrow.balance_now(s.customer_id), 1_400);
    let nonce: String =
        t.db.query_one("SELECT nonce FROM escrow_transactions", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(nonce, "api:startup-reseed");
}
