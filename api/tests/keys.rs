//! API keys: create within limits, list masked, regenerate atomically, revoke, scoping.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;
use suiftly_vault::at_rest::KeyBinding;
use suiftly_vault::{ApiKeyCodec, KeyCipher, Secret, ServiceLetter};

async fn with_seal(t: &TestApp, n: u8) -> Session {
    let s = t.login(n).await;
    t.deposit(&s, 10_000).await;
    assert_eq!(
        t.post("/services/seal/enable", &s.token, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    s
}

#[tokio::test]
async fn create_decodes_to_the_caller_and_is_encrypted_at_rest() {
    let t = test_app().await;
    let s = with_seal(&t, 1).await;
    let r = t
        .post("/keys", &s.token, json!({ "service": "seal", "network": "testnet", "access": "permission", "proc_group": 3 }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let key = r.body["api_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 37);
    let d = ApiKeyCodec::new(&Secret::development())
        .decode(&key)
        .unwrap();
    assert_eq!(d.customer_id as i32, s.customer_id);
    assert_eq!(d.service, ServiceLetter::Seal);
    assert_eq!(d.metadata.proc_group, 3);
    assert_eq!(r.body["fingerprint"], d.fingerprint as i64);
    assert_eq!(r.body["network"], "testnet");
    assert_eq!(r.body["access"], "permission");
    assert_eq!(r.body["source"], "derived");
    // At rest: AES-256-GCM with the separate key; the plaintext is nowhere in the row.
    let row =
        t.db.query_one(
            "SELECT encrypted_key, key_preview, fingerprint, key_id FROM api_keys",
            &[],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(0);
    assert!(!sealed.windows(key.len()).any(|w| w == key.as_bytes()));
    let cipher = KeyCipher::new(&Secret::from_bytes(suiftly_api::DEV_KEY_ENCRYPTION_KEY));
    let binding = KeyBinding {
        key_id: row.get(3),
        customer_id: s.customer_id,
    };
    assert_eq!(r.body["key_id"], binding.key_id);
    assert_eq!(cipher.open(&sealed, binding).unwrap(), key.as_bytes());
    assert_eq!(row.get::<_, i64>(2), d.fingerprint as i64);
    // Listing shows a masked preview only.
    let list = t.get("/keys", &s.token).await;
    assert_eq!(list.status, StatusCode::OK);
    let keys = list.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("api_key").is_none());
    assert_eq!(keys[0]["preview"], format!("{}…{}", &key[..6], &key[33..]));
    assert!(!list.body.to_string().contains(&key));
}

#[tokio::test]
async fn key_limit_is_included_plus_bought() {
    let t = test_app().await;
    let s = with_seal(&t, 2).await;
    for _ in 0..2 {
        assert_eq!(
            t.post("/keys", &s.token, json!({ "service": "seal" }))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let r = t
        .post("/keys", &s.token, json!({ "service": "seal" }))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "api_key_limit_reached")
    );
    assert_eq!(r.body["error"]["details"], json!({ "limit": 2 }));
    // Buy one extra key ($1/month, cost-checked) and the third key fits.
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "starter", "extra_api_keys": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        t.post("/keys", &s.token, json!({ "service": "seal" }))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.post("/keys", &s.token, json!({ "service": "seal" }))
            .await
            .code(),
        "api_key_limit_reached"
    );
    // The limit cannot drop below the active keys.
    let r = t
        .put(
            "/services/seal/config",
            &s.token,
            json!({ "tier": "starter" }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config")
    );
    // Revoking frees a slot.
    let id = t.get("/keys", &s.token).await.body["keys"][0]["key_id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        t.call(Method::DELETE, &format!("/keys/{id}"), Some(&s.token), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.post("/keys", &s.token, json!({ "service": "seal" }))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn concurrent_creates_respect_the_limit() {
    let t = test_app().await;
    let s = with_seal(&t, 3).await;
    let body = || Some(json!({ "service": "seal" }));
    let rs = futures_join4(
        t.call(Method::POST, "/keys", Some(&s.token), body()),
        t.call(Method::POST, "/keys", Some(&s.token), body()),
        t.call(Method::POST, "/keys", Some(&s.token), body()),
        t.call(Method::POST, "/keys", Some(&s.token), body()),
    )
    .await;
    let created = rs
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let refused = rs
        .iter()
        .filter(|r| r.code() == "api_key_limit_reached")
        .count();
    assert_eq!((created, refused), (2, 2));
}

async fn futures_join4<A, B, C, D>(a: A, b: B, c: C, d: D) -> Vec<Resp>
where
    A: std::future::Future<Output = Resp>,
    B: std::future::Future<Output = Resp>,
    C: std::future::Future<Output = Resp>,
    D: std::future::Future<Output = Resp>,
{
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    vec![a, b, c, d]
}

#[tokio::test]
async fn create_errors() {
    let t = test_app().await;
    let s = t.login(4).await;
    // Service not configured yet.
    let r = t
        .post("/keys", &s.token, json!({ "service": "grpc" }))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        t.post("/keys", &s.token, json!({ "service": "ssfn" }))
            .await
            .code(),
        "service_not_available"
    );
    assert_eq!(
        t.post("/keys", &s.token, json!({ "service": "x" }))
            .await
            .code(),
        "unknown_service"
    );
    let r = t
        .post(
            "/keys",
            &s.token,
            json!({ "service": "seal", "proc_group": 8 }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = t.get("/keys?service=sealo", &s.token).await;
    assert_eq!(r.code(), "service_not_available");
    let r = t
        .call(Method::DELETE, "/keys/abc", Some(&s.token), None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = t
        .call(Method::DELETE, "/keys/999", Some(&s.token), None)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn regenerate_revokes_and_issues_atomically() {
    let t = test_app().await;
    let s = with_seal(&t, 5).await;
    let old = t
        .post(
            "/keys",
            &s.token,
            json!({ "service": "seal", "proc_group": 5 }),
        )
        .await;
    let old_id = old.body["key_id"].as_i64().unwrap();
    let r = t
        .post(&format!("/keys/{old_id}/regenerate"), &s.token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["replaces_key_id"], old_id);
    assert_ne!(r.body["api_key"], old.body["api_key"]);
    assert_eq!(r.body["proc_group"], 5, "metadata carries over");
    let active = t.get("/keys", &s.token).await;
    let ids: Vec<i64> = active.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![r.body["key_id"].as_i64().unwrap()]);
    let all = t.get("/keys?include_revoked=true", &s.token).await;
    assert_eq!(all.body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(all.body["keys"][0]["is_active"], false);
    // A revoked key cannot be regenerated again (no second replacement).
    let r = t
        .post(&format!("/keys/{old_id}/regenerate"), &s.token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_customers_key_is_404() {
    let t = test_app().await;
    let a = with_seal(&t, 6).await;
    let b = with_seal(&t, 7).await;
    let k = t
        .post("/keys", &a.token, json!({ "service": "seal" }))
        .await;
    let id = k.body["key_id"].as_i64().unwrap();
    let r = t
        .post(&format!("/keys/{id}/regenerate"), &b.token, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = t
        .call(Method::DELETE, &format!("/keys/{id}"), Some(&b.token), None)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        t.get("/keys?include_revoked=true", &b.token).await.body["keys"],
        json!([])
    );
    // a's key is untouched.
    assert_eq!(
        t.get("/keys", &a.token).await.body["keys"][0]["is_active"],
        true
    );
    // Same message for "exists but not yours" and "does not exist".
    let missing = t
        .call(Method::DELETE, "/keys/987654", Some(&b.token), None)
        .await;
    assert_eq!(missing.body, r.body);
}

#[tokio::test]
async fn bad_query_parameters_are_json_errors() {
    let t = test_app().await;
    let s = t.login(8).await;
    let r = t.get("/keys?colour=red", &s.token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = t.get("/keys?include_revoked=maybe", &s.token).await;
    assert_eq!(r.code(), "invalid_request");
}

/// Issue 15 item 10: each stored ciphertext is bound to its row, so swapping the column between
/// two rows (two keys of one customer, or keys of two customers) leaves both undecryptable
/// instead of silently exchanging the keys.
#[tokio::test]
async fn swapped_ciphertexts_do_not_decrypt() {
    let t = test_app().await;
    let a = with_seal(&t, 11).await;
    let b = with_seal(&t, 12).await;
    let mut made = Vec::new();
    for s in [&a, &a, &b] {
        let r = t
            .post("/keys", &s.token, json!({ "service": "seal" }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        made.push((
            r.body["key_id"].as_i64().unwrap(),
            s.customer_id,
            r.body["api_key"].as_str().unwrap().to_string(),
        ));
    }
    let cipher = KeyCipher::new(&Secret::from_bytes(suiftly_api::DEV_KEY_ENCRYPTION_KEY));
    let sealed = |id: i64| {
        let db = &t.db;
        async move {
            db.query_one(
                "SELECT encrypted_key FROM api_keys WHERE key_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, Vec<u8>>(0)
        }
    };
    // As stored, each row opens to its own key.
    for (id, cust, key) in &made {
        let v = sealed(*id).await;
        let row = KeyBinding {
            key_id: *id,
            customer_id: *cust,
        };
        assert_eq!(cipher.open(&v, row).unwrap(), key.as_bytes());
    }
    // Swap within one customer and across customers: nothing opens any more.
    for (i, j) in [(0, 1), (1, 2)] {
        let (x, y) = (&made[i], &made[j]);
        let moved = sealed(y.0).await;
        let row = KeyBinding {
            key_id: x.0,
            customer_id: x.1,
        };
        assert!(
            cipher.open(&moved, row).is_err(),
            "key {} sealed for row {} must not open as row {}",
            y.2,
            y.0,
            x.0
        );
    }
}
