//! Billing endpoints over the persistent escrow mock.

mod common;

use suiftly_billing::Escrow;

use std::sync::Arc;

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
    assert_eq!(t.escrow.balance(s.customer_id).await.unwrap(), 5_000);
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
    assert_eq!(t.escrow.balance(b.customer_id).await.unwrap(), 1_234);
    assert_eq!(t.escrow.balance(a.customer_id).await.unwrap(), 1_234);
    assert_eq!(
        t.get("/billing/balance", &a.token).await.body["balance_usd_cents"],
        1_234
    );
}

#[tokio::test]
async fn client_keys_cannot_collide_with_system_nonces() {
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
    assert_eq!(t.escrow.balance(s.customer_id).await.unwrap(), 1_400);
    let nonce: String =
        t.db.query_one("SELECT nonce FROM escrow_transactions", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(nonce, "api:startup-reseed");
}

// ---------------------------------------------------------------------------------------
// Issue 11: intent first, idempotency that survives restarts, the dashboard's billing views.

async fn ledger_rows(t: &TestApp) -> i64 {
    t.db.query_one("SELECT count(*) FROM escrow_transactions", &[])
        .await
        .unwrap()
        .get(0)
}

/// The defect the issue names: a withdraw replayed after a restart paid out again while
/// answering `replayed: true`. Now the key is stored with the intent in PostgreSQL.
#[tokio::test]
async fn a_replay_after_a_restart_moves_no_money() {
    let t = test_app().await;
    let s = t.login(20).await;
    let d = t
        .post(
            "/billing/deposit",
            &s.token,
            json!({ "amount_usd_cents": 9_000, "idempotency_key": "dep-r" }),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    let w = t
        .post(
            "/billing/withdraw",
            &s.token,
            json!({ "amount_usd_cents": 4_000, "idempotency_key": "wd-r" }),
        )
        .await;
    assert_eq!(w.status, StatusCode::OK, "{:?}", w.body);
    assert_eq!(w.body["balance_usd_cents"], 5_000);
    // A new process: new pools, a new escrow mock instance, nothing in memory.
    let t2 = t.restarted().await;
    for _ in 0..2 {
        let r = t2
            .post(
                "/billing/withdraw",
                &s.token,
                json!({ "amount_usd_cents": 4_000, "idempotency_key": "wd-r" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["replayed"], true);
        assert_eq!(r.body["tx_digest"], w.body["tx_digest"]);
        let r = t2
            .post(
                "/billing/deposit",
                &s.token,
                json!({ "amount_usd_cents": 9_000, "idempotency_key": "dep-r" }),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["replayed"]),
            (StatusCode::OK, &json!(true))
        );
    }
    assert_eq!(t2.escrow.balance(s.customer_id).await.unwrap(), 5_000);
    assert_eq!(ledger_rows(&t2).await, 2);
    assert_eq!(
        t2.get("/billing/balance", &s.token).await.body["balance_usd_cents"],
        5_000
    );
    // The same key on the other operation, or with another amount: 409, nothing moves.
    for (path, amount) in [("/billing/deposit", 4_000), ("/billing/withdraw", 1)] {
        let r = t2
            .post(
                path,
                &s.token,
                json!({ "amount_usd_cents": amount, "idempotency_key": "wd-r" }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "idempotency_conflict"),
            "{path}"
        );
    }
    assert_eq!(t2.escrow.balance(s.customer_id).await.unwrap(), 5_000);
}

/// The escrow moved but its reply was lost (a timeout): the intent stays pending, the client
/// is told to retry with its key, and the retry completes it with the same nonce — once.
#[tokio::test]
async fn a_lost_escrow_reply_is_completed_by_the_retry() {
    let t = test_app().await;
    let s = t.login(21).await;
    t.deposit(&s, 10_000).await;
    t.escrow.lose_next_replies(1);
    let body = json!({ "amount_usd_cents": 3_000, "idempotency_key": "wd-lost" });
    let r = t.post("/billing/withdraw", &s.token, body.clone()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert_eq!(
        t.escrow.balance(s.customer_id).await.unwrap(),
        7_000,
        "the escrow moved"
    );
    assert_eq!(ledger_rows(&t).await, 1, "not recorded yet");
    // While it is in flight, it counts against what may still be withdrawn.
    let r = t
        .post(
            "/billing/withdraw",
            &s.token,
            json!({ "amount_usd_cents": 7_001 }),
        )
        .await;
    assert_eq!(r.code(), "insufficient_escrow_funds");
    assert_eq!(
        r.body["error"]["details"],
        json!({ "balance_usd_cents": 7_000, "requested_usd_cents": 7_001 })
    );
    let r = t.post("/billing/withdraw", &s.token, body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["replayed"], false, "first complete answer");
    assert_eq!(r.body["balance_usd_cents"], 7_000);
    assert_eq!(t.escrow.balance(s.customer_id).await.unwrap(), 7_000);
    assert_eq!(ledger_rows(&t).await, 2);
    assert_eq!(
        t.get("/billing/balance", &s.token).await.body["balance_usd_cents"],
        7_000
    );
}

/// An escrow that takes its time (to cancel a request in the middle of it).
struct SlowEscrow(Arc<suiftly_escrow::PgMockEscrow>);

impl suiftly_billing::Escrow for SlowEscrow {
    fn balance(&self, a: i32) -> suiftly_billing::escrow::EscrowFuture<'_, i64> {
        self.0.balance(a)
    }
    fn deposit<'a>(
        &'a self,
        a: i32,
        c: i64,
        n: &'a str,
    ) -> suiftly_billing::escrow::EscrowFuture<'a, suiftly_billing::EscrowTx> {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            self.0.deposit(a, c, n).await
        })
    }
    fn withdraw<'a>(
        &'a self,
        a: i32,
        c: i64,
        n: &'a str,
    ) -> suiftly_billing::escrow::EscrowFuture<'a, suiftly_billing::EscrowTx> {
        self.0.withdraw(a, c, n)
    }
    fn charge<'a>(
        &'a self,
        a: i32,
        c: i64,
        n: &'a str,
    ) -> suiftly_billing::escrow::EscrowFuture<'a, suiftly_billing::EscrowTx> {
        self.0.charge(a, c, n)
    }
    fn history(
        &self,
        a: i32,
    ) -> suiftly_billing::escrow::EscrowFuture<'_, Vec<suiftly_billing::EscrowTx>> {
        self.0.history(a)
    }
}

/// A client that hangs up while the escrow is being called does not cut the movement in half.
#[tokio::test]
async fn a_cancelled_request_still_records_the_movement() {
    let base = test_app().await;
    let s = base.login(22).await;
    let slow: Arc<dyn suiftly_billing::Escrow> = Arc::new(SlowEscrow(base.escrow.clone()));
    let t = app_on(
        base.conninfo.clone(),
        test_config(),
        base.clock.clone(),
        Some(slow),
    )
    .await;
    let router = t.router.clone();
    let token = s.token.clone();
    let req = tokio::spawn(async move {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/billing/deposit")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                r#"{"amount_usd_cents": 2500, "idempotency_key": "cut"}"#,
            ))
            .unwrap();
        router.oneshot(req).await
    });
    // Wait until the intent is committed, then drop the request.
    let mut seen = false;
    for _ in 0..200 {
        let n: i64 =
            t.db.query_one("SELECT count(*) FROM escrow_intents", &[])
                .await
                .unwrap()
                .get(0);
        if n == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen, "intent never committed");
    req.abort();
    let _ = req.await;
    // The movement finishes on its own.
    let mut done = false;
    for _ in 0..300 {
        let st: String =
            t.db.query_one("SELECT state FROM escrow_intents", &[])
                .await
                .unwrap()
                .get(0);
        if st == "succeeded" {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(done, "the cancelled movement was not completed");
    assert_eq!(ledger_rows(&t).await, 1);
    assert_eq!(t.escrow.balance(s.customer_id).await.unwrap(), 2_500);
    let r = base
        .post(
            "/billing/deposit",
            &s.token,
            json!({ "amount_usd_cents": 2_500, "idempotency_key": "cut" }),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["replayed"]),
        (StatusCode::OK, &json!(true))
    );
}

async fn listen(conninfo: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use futures_util::StreamExt;
    let (client, mut conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut s = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = s.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute("LISTEN suiftly_manager")
        .await
        .unwrap();
    // Keep the client alive as long as the connection task runs.
    std::mem::forget(client);
    rx
}

#[tokio::test]
async fn changes_are_journaled_and_notified() {
    let t = test_app().await;
    let s = t.login(23).await;
    let mut rx = listen(&t.conninfo).await;
    t.deposit(&s, 20_000).await;
    let r = t.post("/services/grpc/enable", &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = t
        .put("/services/grpc/tier", &s.token, json!({ "tier": "pro" }))
        .await;
    assert_eq!(r.body["tier"], "pro");
    let r = t
        .post("/keys", &s.token, json!({ "service": "grpc" }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    r#let(&t, &s).await;
    let mut events = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv()).await
    {
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["customer_id"], s.customer_id);
        // (The vault's triggers add `access_changed` for key and service rows: migration V21.)
        if v["event"] != "access_changed" {
            events.push(v["event"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(events, ["deposit", "service", "service", "key", "limit"]);
    // The journal holds the state after each change.
    let rows = t
        .db
        .query(
            "SELECT is_enabled, config->>'tier', pending_config->>'tier' FROM service_events ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(bool, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [(true, "starter".into(), None), (true, "pro".into(), None)]
    );
}

async fn r#let(t: &TestApp, s: &Session) {
    let r = t
        .put(
            "/billing/limit",
            &s.token,
            json!({ "max_monthly_usd_cents": 300_000 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_downgrade_waits_for_the_first_and_suspension_is_visible() {
    let t = test_app().await;
    let s = t.login(24).await;
    t.deposit(&s, 20_000).await;
    t.post("/services/seal/enable", &s.token, json!({})).await;
    let r = t
        .put(
            "/services/seal/tier",
            &s.token,
            json!({ "tier": "enterprise" }),
        )
        .await;
    assert_eq!(r.body["tier"], "enterprise");
    // Down to pro on 26 Nov: enterprise stays in force until 1 Dec.
    let r = t
        .put("/services/seal/tier", &s.token, json!({ "tier": "pro" }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["tier"], "enterprise");
    assert_eq!(r.body["pending_change"]["tier"], "pro");
    assert_eq!(r.body["pending_change"]["effective"], "2026-12-01");
    assert_eq!(r.body["monthly_price_usd_cents"], 8_000);
    // On 1 Dec the API already shows it in force (before the manager writes it).
    t.clock.advance(chrono::TimeDelta::days(5));
    let s = t.login(24).await; // the access token expired meanwhile
    let r = t.get("/services/seal", &s.token).await;
    assert_eq!(
        (r.body["tier"].as_str(), &r.body["pending_change"]),
        (Some("pro"), &json!(null))
    );
    // Going back up cancels a scheduled downgrade.
    t.clock.advance(chrono::TimeDelta::days(-5));
    let s = t.login(24).await;
    let r = t
        .put(
            "/services/seal/tier",
            &s.token,
            json!({ "tier": "enterprise" }),
        )
        .await;
    assert_eq!(r.body["pending_change"], json!(null));
    // Suspension set by the manager is visible on every enabled service.
    t.db.execute(
        "UPDATE customers SET suspension_reason = 'insufficient_balance', suspended_at = now() WHERE customer_id = $1",
        &[&s.customer_id],
    )
    .await
    .unwrap();
    let r = t.get("/services", &s.token).await;
    assert_eq!(r.body["suspension"]["reason"], "insufficient_balance");
    assert_eq!(r.body["services"][0]["suspended"], true);
    assert_eq!(
        r.body["services"][0]["suspension_reason"],
        "insufficient_balance"
    );
}

#[tokio::test]
async fn invoices_current_and_transactions() {
    let t = test_app().await;
    let a = t.login(25).await;
    let b = t.login(26).await;
    t.deposit(&a, 7_000).await;
    // Invoices as the manager writes them: November's draft for a, one for b.
    let mut ids = Vec::new();
    for (cust, month) in [
        (a.customer_id, "2026-10-01"),
        (a.customer_id, "2026-11-01"),
        (b.customer_id, "2026-11-01"),
    ] {
        let id: i64 = t
            .db
            .query_one(
                "INSERT INTO invoices (customer_id, month, epoch) VALUES ($1, $2::text::date, 1) RETURNING invoice_id",
                &[&cust, &month],
            )
            .await
            .unwrap()
            .get(0);
        ids.push(id);
    }
    t.db.execute(
        "INSERT INTO invoice_lines (invoice_id, line_key, kind, service_type, metric, for_month, amount_cents,
             quantity_before, quantity_after, usage_from, usage_to, description, epoch)
         VALUES ($1, 'usage:seal:requests:2026-11:0', 'usage', 1, 'requests', '2026-11-01', 500, 0, 50000,
             '2026-11-01', '2026-11-20', 'seal requests: 0 → 50000 requests', 1)",
        &[&ids[1]],
    )
    .await
    .unwrap();
    t.db.execute(
        "INSERT INTO usage_month_totals (customer_id, service_type, month, requests, bytes) VALUES ($1, 1, '2026-11-01', 80000, 0)",
        &[&a.customer_id],
    )
    .await
    .unwrap();
    t.db.execute(
        "INSERT INTO usage_invoiced (customer_id, service_type, month, requests, bytes) VALUES ($1, 1, '2026-11-01', 50000, 0)",
        &[&a.customer_id],
    )
    .await
    .unwrap();

    let r = t.get("/billing/invoices", &a.token).await;
    assert_eq!(r.status, StatusCode::OK);
    let months: Vec<&str> = r.body["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["month"].as_str().unwrap())
        .collect();
    assert_eq!(months, ["2026-11", "2026-10"]);
    assert_eq!(r.body["invoices"][0]["due_usd_cents"], 500);
    let r = t
        .get(&format!("/billing/invoices/{}", ids[1]), &a.token)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["lines"][0]["quantity_after"], 50_000);
    assert_eq!(r.body["lines"][0]["service"], "seal");
    assert_eq!(r.body["lines"][0]["usage_to"], "2026-11-20T00:00:00Z");
    // Another customer's invoice is not found, like a missing one.
    for id in [ids[2], 999_999] {
        let r = t.get(&format!("/billing/invoices/{id}"), &a.token).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    }
    let r = t.get("/billing/invoices/abc", &a.token).await;
    assert_eq!(r.code(), "invalid_request");

    // Month to date (the test clock is 26 Nov): 500 on the draft + 300 settled, not billed.
    let r = t.get("/billing/current", &a.token).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["month"], "2026-11");
    assert_eq!(r.body["invoiced_usd_cents"], 500);
    assert_eq!(r.body["unbilled_usage_usd_cents"], 300);
    assert_eq!(r.body["month_to_date_usd_cents"], 800);
    assert_eq!(r.body["usage_source"], "settled");
    let r = t.get("/billing/current", &b.token).await;
    assert_eq!(r.body["month_to_date_usd_cents"], 0);

    let r = t.get("/billing/transactions", &a.token).await;
    assert_eq!(r.body["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["transactions"][0]["kind"], "deposit");
    assert_eq!(r.body["transactions"][0]["balance_after_usd_cents"], 7_000);
    assert_eq!(r.body["pending"], json!([]));
    assert_eq!(
        t.get("/billing/transactions", &b.token).await.body["transactions"],
        json!([])
    );
    let r = t.get("/billing/transactions?limit=0", &a.token).await;
    assert_eq!(r.code(), "invalid_request");
}
