//! Seal keys (issue 13, item 4): derived and imported keys, packages per key, extras bought
//! under the spend check (a refused purchase changes nothing), deletes that shrink the pooled
//! package allowance, scoping, and the configuration check that keeps what is bought ≥ what
//! is used.

mod common;

use axum::http::{Method, StatusCode};
use base64::Engine;
use common::*;
use serde_json::{Value, json};

async fn with_seal(t: &TestApp, n: u8, deposit: i64) -> Session {
    let s = t.login(n).await;
    t.deposit(&s, deposit).await;
    let r = t.post("/services/seal/enable", &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    s
}

fn pkg(n: u8) -> String {
    format!("0x{}", hex::encode([n; 32]))
}

fn imported(n: u8) -> Value {
    json!({
        "source": "imported",
        "name": format!("imported {n}"),
        "network": "testnet",
        "public_key": hex::encode([n; 96]),
        "encrypted_private_key": base64::engine::general_purpose::STANDARD.encode([n; 80]),
    })
}

async fn config(t: &TestApp, s: &Session) -> Value {
    let r = t.get("/services/seal", &s.token).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body
}

#[tokio::test]
async fn keys_and_packages_buy_extras_under_the_spend_check() {
    let t = test_app().await;
    let s = with_seal(&t, 1, 10_000).await;
    let l = t.get("/seal-keys", &s.token).await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(l.body["seal_keys"], json!([]));
    assert_eq!(l.body["allowance"]["included_keys"], 1);

    // The included key: derived, nothing bought.
    let k1 = t
        .post("/seal-keys", &s.token, json!({ "name": "main" }))
        .await;
    assert_eq!(k1.status, StatusCode::CREATED, "{:?}", k1.body);
    assert_eq!(k1.body["source"], "derived");
    assert_eq!(k1.body["network"], "mainnet");
    assert_eq!(k1.body["public_key"].as_str().unwrap().len(), 192);
    assert!(k1.body["derivation_index"].as_i64().unwrap() >= 0);
    assert_eq!(k1.body["allowance"]["purchased_keys"], 0);
    assert_eq!(config(&t, &s).await["monthly_price_usd_cents"], 2_000);

    // A second key (imported) buys one extra key: +$5.
    let k2 = t.post("/seal-keys", &s.token, imported(9)).await;
    assert_eq!(k2.status, StatusCode::CREATED, "{:?}", k2.body);
    assert_eq!(k2.body["source"], "imported");
    assert!(k2.body["derivation_index"].is_null());
    let c = config(&t, &s).await;
    assert_eq!(c["config"]["extra_seal_keys"], 1);
    assert_eq!(c["monthly_price_usd_cents"], 2_500);
    // The purchase is a change of the service: billing sees it in the journal (the enable,
    // then the extra), with the state after it.
    let j =
        t.db.query(
            "SELECT is_enabled, (config->>'extra_seal_keys')::int, config->>'tier', source \
             FROM service_events ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let j: Vec<(bool, i32, String, String)> = j
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        j,
        [
            (true, 0, "starter".to_string(), "api".to_string()),
            (true, 1, "starter".to_string(), "api".to_string())
        ]
    );
    // The same public key cannot be imported twice; malformed input is refused.
    let dup = t.post("/seal-keys", &s.token, imported(9)).await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    for bad in [
        json!({ "source": "imported", "public_key": "00", "encrypted_private_key": "AA==" }),
        json!({ "source": "imported", "public_key": hex::encode([1u8; 96]) }),
        json!({ "source": "derived", "public_key": hex::encode([1u8; 96]) }),
        json!({ "name": "x".repeat(65) }),
        json!({ "surprise": 1 }),
    ] {
        let r = t.post("/seal-keys", &s.token, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }

    // Packages: 3 per key included, pooled (2 keys: 6), the 7th buys one (+$1).
    let id1 = k1.body["seal_key_id"].as_i64().unwrap();
    let id2 = k2.body["seal_key_id"].as_i64().unwrap();
    for n in 1..=7u8 {
        let r = t
            .post(
                &format!("/seal-keys/{id1}/packages"),
                &s.token,
                json!({ "package_id": pkg(n) }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let c = config(&t, &s).await;
    assert_eq!(c["config"]["extra_packages"], 1);
    assert_eq!(c["monthly_price_usd_cents"], 2_600);
    let dup = t
        .post(
            &format!("/seal-keys/{id1}/packages"),
            &s.token,
            json!({ "package_id": pkg(1).to_uppercase().replace("0X", "0x") }),
        )
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST, "normalized duplicate");
    let bad = t
        .post(
            &format!("/seal-keys/{id1}/packages"),
            &s.token,
            json!({ "package_id": "0x12" }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let r = t
        .call(
            Method::DELETE,
            &format!("/seal-keys/{id1}/packages/{}", pkg(7)),
            Some(&s.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let p = t.get(&format!("/seal-keys/{id1}/packages"), &s.token).await;
    assert_eq!(p.body["packages"].as_array().unwrap().len(), 6);

    // Deleting the empty key takes its 3 included packages with it: 6 packages on 1 key need
    // 3 extras (1 bought): buys 2 more, spend-checked.
    let r = t
        .call(
            Method::DELETE,
            &format!("/seal-keys/{id2}"),
            Some(&s.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let c = config(&t, &s).await;
    assert_eq!(c["config"]["extra_packages"], 3);
    // Nothing is sold back: the extra key stays bought.
    assert_eq!(c["config"]["extra_seal_keys"], 1);
    // ...and buying less than is used is refused.
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "starter", "extra_seal_keys": 1, "extra_packages": 0 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.code(), "invalid_config");
    // A deleted key is gone from the list; its row stays (the index is never reused).
    let l = t.get("/seal-keys", &s.token).await;
    assert_eq!(l.body["seal_keys"].as_array().unwrap().len(), 1);
    assert_eq!(l.body["allowance"]["packages"], 6);
    let gone = t
        .call(
            Method::DELETE,
            &format!("/seal-keys/{id2}"),
            Some(&s.token),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let n: i64 =
        t.db.query_one("SELECT count(*) FROM seal_keys WHERE NOT is_active", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1);
    // A new derived key gets a fresh index.
    let k3 = t.post("/seal-keys", &s.token, json!({})).await;
    assert_eq!(k3.status, StatusCode::CREATED);
    assert_ne!(k3.body["derivation_index"], k1.body["derivation_index"]);
}

#[tokio::test]
async fn a_refused_purchase_changes_nothing() {
    let t = test_app().await;
    let s = with_seal(&t, 2, 2_400).await;
    let k1 = t.post("/seal-keys", &s.token, json!({})).await;
    assert_eq!(k1.status, StatusCode::CREATED);
    let id1 = k1.body["seal_key_id"].as_i64().unwrap();
    for n in 1..=3u8 {
        let r = t
            .post(
                &format!("/seal-keys/{id1}/packages"),
                &s.token,
                json!({ "package_id": pkg(n) }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // Balance below the price of an extra key or package.
    let w = t
        .post(
            "/billing/withdraw",
            &s.token,
            json!({ "amount_usd_cents": 2_350 }),
        )
        .await;
    assert_eq!(w.status, StatusCode::OK, "{:?}", w.body);
    let before = config(&t, &s).await;
    let r = t.post("/seal-keys", &s.token, json!({})).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    assert_eq!(r.code(), "insufficient_balance");
    assert_eq!(r.body["error"]["details"]["estimated_cost_usd_cents"], 500);
    let r = t
        .post(
            &format!("/seal-keys/{id1}/packages"),
            &s.token,
            json!({ "package_id": pkg(4) }),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    assert_eq!(config(&t, &s).await, before);
    // Nothing reached the journal either: the enable and the 3 included packages only.
    let events: i64 =
        t.db.query_one("SELECT count(*) FROM service_events", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(events, 1);
    let keys: i64 =
        t.db.query_one("SELECT count(*) FROM seal_keys", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(keys, 1);
    let p = t.get(&format!("/seal-keys/{id1}/packages"), &s.token).await;
    assert_eq!(p.body["packages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn seal_keys_are_scoped_to_their_customer() {
    let t = test_app().await;
    let a = with_seal(&t, 3, 10_000).await;
    let b = t.login(4).await;
    // No seal service: nothing to add keys to.
    let r = t.post("/seal-keys", &b.token, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let k = t.post("/seal-keys", &a.token, json!({})).await;
    let id = k.body["seal_key_id"].as_i64().unwrap();
    assert_eq!(
        t.get("/seal-keys", &b.token).await.body["seal_keys"],
        json!([])
    );
    for (m, path, body) in [
        (Method::DELETE, format!("/seal-keys/{id}"), None),
        (Method::GET, format!("/seal-keys/{id}/packages"), None),
        (
            Method::POST,
            format!("/seal-keys/{id}/packages"),
            Some(json!({ "package_id": pkg(1) })),
        ),
    ] {
        let r = t.call(m.clone(), &path, Some(&b.token), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}");
    }
    let r = t.get("/seal-keys", "not-a-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A's key is intact.
    assert_eq!(
        t.get("/seal-keys", &a.token).await.body["seal_keys"][0]["seal_key_id"],
        json!(id)
    );
}
