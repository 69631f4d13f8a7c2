//! Wallet login, sessions and the security properties of SPEC section 8.

mod common;

use axum::http::{Method, StatusCode, header};
use base64::Engine;
use chrono::TimeDelta;
use common::*;
use serde_json::json;
use suiftly_api::{ApiConfig, ConfigError, sui};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[tokio::test]
async fn login_issues_tokens_and_cookie() {
    let t = test_app().await;
    let s = t.login(1).await;
    assert!(s.customer_id > 0);
    let r = t.get("/services", &s.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["services"], json!([]));
    // The cookie is httpOnly, SameSite and scoped to /auth; not Secure outside production.
    let (addr, _) = sui::sign_personal_message(&seed(2), b"");
    let nonce = t.connect(&addr).await.body["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, sig) = sui::sign_personal_message(&seed(2), sui::login_message(&nonce).as_bytes());
    let v = t
        .call(
            Method::POST,
            "/auth/verify",
            None,
            Some(json!({ "walletAddress": addr, "signature": sig, "nonce": nonce })),
        )
        .await;
    let set = v.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Max-Age=2592000")
    );
    assert!(!set.contains("Secure"));
    assert_eq!(v.body["expiresIn"], 900);
    // Logging in again with the same wallet is the same customer.
    let again = t.login(1).await;
    assert_eq!(again.customer_id, s.customer_id);
}

#[tokio::test]
async fn connect_reuses_a_valid_nonce_and_validates_the_address() {
    let t = test_app().await;
    let (addr, _) = sui::sign_personal_message(&seed(3), b"");
    let a = t.connect(&addr).await;
    let b = t
        .connect(&addr.to_uppercase().replacen("0X", "0x", 1))
        .await;
    assert_eq!(a.body["nonce"], b.body["nonce"]);
    assert_eq!(a.body["nonce"].as_str().unwrap().len(), 64);
    // After 10 minutes a new one is issued.
    t.clock.advance(TimeDelta::minutes(10));
    let c = t.connect(&addr).await;
    assert_ne!(a.body["nonce"], c.body["nonce"]);
    // Expired nonces (of any wallet) are deleted, so the table cannot grow without bound.
    let n: i64 =
        t.db.query_one("SELECT count(*) FROM auth_nonces", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1);
    for bad in [
        "0x12",
        "160179a1565ea7cff27ead23f54cc7f50893bf58155cd7285156e57afa31c3ac00",
        "0xzz79a1565ea7cff27ead23f54cc7f50893bf58155cd7285156e57afa31c3ac",
    ] {
        let r = t.connect(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "invalid_request");
    }
    let r = t
        .call(
            Method::POST,
            "/auth/connect",
            None,
            Some(json!({ "wallet": addr })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn verify(t: &TestApp, addr: &str, sig: &str, nonce: &str) -> Resp {
    t.call(
        Method::POST,
        "/auth/verify",
        None,
        Some(json!({ "walletAddress": addr, "signature": sig, "nonce": nonce })),
    )
    .await
}

#[tokio::test]
async fn replayed_nonce_is_refused() {
    let t = test_app().await;
    let (addr, _) = sui::sign_personal_message(&seed(4), b"");
    let nonce = t.connect(&addr).await.body["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, sig) = sui::sign_personal_message(&seed(4), sui::login_message(&nonce).as_bytes());
    assert_eq!(verify(&t, &addr, &sig, &nonce).await.status, StatusCode::OK);
    let replay = verify(&t, &addr, &sig, &nonce).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.code(), "invalid_nonce");
    // A used nonce is not handed out again either.
    assert_ne!(
        t.connect(&addr).await.body["nonce"].as_str().unwrap(),
        nonce
    );
}

#[tokio::test]
async fn expired_and_unknown_nonces_are_refused() {
    let t = test_app().await;
    let (addr, _) = sui::sign_personal_message(&seed(5), b"");
    let nonce = t.connect(&addr).await.body["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, sig) = sui::sign_personal_message(&seed(5), sui::login_message(&nonce).as_bytes());
    t.clock
        .advance(TimeDelta::minutes(10) + TimeDelta::seconds(1));
    let r = verify(&t, &addr, &sig, &nonce).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_nonce")
    );
    let r = verify(&t, &addr, &sig, &"ab".repeat(32)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_nonce")
    );
}

#[tokio::test]
async fn wrong_address_and_bad_signatures_are_refused() {
    let t = test_app().await;
    let (victim, _) = sui::sign_personal_message(&seed(6), b"");
    let nonce = t.connect(&victim).await.body["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    // The attacker signs the victim's challenge with their own key.
    let (_, sig) = sui::sign_personal_message(&seed(7), sui::login_message(&nonce).as_bytes());
    let r = verify(&t, &victim, &sig, &nonce).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    // The victim's key over another message.
    let (_, other) = sui::sign_personal_message(&seed(6), b"something else");
    let r = verify(&t, &victim, &other, &nonce).await;
    assert_eq!(r.code(), "invalid_signature");
    let r = verify(&t, &victim, "not base64!", &nonce).await;
    assert_eq!(r.code(), "invalid_signature");
    // A failed attempt does not burn the nonce: the real owner can still log in.
    let (_, good) = sui::sign_personal_message(&seed(6), sui::login_message(&nonce).as_bytes());
    assert_eq!(
        verify(&t, &victim, &good, &nonce).await.status,
        StatusCode::OK
    );
    let n: i64 =
        t.db.query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1);
}

fn forge(token: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(p).unwrap()).unwrap();
    f(&mut claims);
    format!(
        "{h}.{}.{s}",
        B64URL.encode(serde_json::to_vec(&claims).unwrap())
    )
}

#[tokio::test]
async fn tampered_alg_none_expired_and_wrong_type_tokens_are_refused() {
    let t = test_app().await;
    let a = t.login(8).await;
    let b = t.login(9).await;
    // Tampered: claim to be customer b with a's signature.
    let tampered = forge(&a.token, |c| c["sub"] = json!(b.customer_id.to_string()));
    let r = t.get("/services", &tampered).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    // alg: none with no signature.
    let header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = a.token.split('.').nth(1).unwrap();
    for sig in ["", "AAAA"] {
        let none = format!("{header}.{payload}.{sig}");
        assert_eq!(
            t.get("/services", &none).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Not a JWT at all.
    assert_eq!(
        t.get("/services", "x.y.z").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = t.call(Method::GET, "/services", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    // The refresh token is not an access token.
    let refresh = a.refresh_cookie.split_once('=').unwrap().1;
    assert_eq!(
        t.get("/services", refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Expired after 15 minutes (injected clock, no sleeping).
    t.clock.advance(TimeDelta::minutes(14));
    assert_eq!(t.get("/services", &a.token).await.status, StatusCode::OK);
    t.clock.advance(TimeDelta::minutes(1));
    let r = t.get("/services", &a.token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
}

#[tokio::test]
async fn refresh_rotates_and_logout_revokes() {
    let t = test_app().await;
    let s = t.login(10).await;
    let r = t.with_cookie("/auth/refresh", &s.refresh_cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new_cookie = refresh_cookie(&r.headers);
    assert_ne!(new_cookie, s.refresh_cookie);
    let token = r.body["accessToken"].as_str().unwrap();
    assert_eq!(
        t.get("/billing/balance", token).await.status,
        StatusCode::OK
    );
    // The old refresh token was rotated out: using it again fails.
    assert_eq!(
        t.with_cookie("/auth/refresh", &s.refresh_cookie)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Logout revokes the current one.
    let out = t.with_cookie("/auth/logout", &new_cookie).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = t.with_cookie("/auth/refresh", &new_cookie).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    // Stored hashed: no token text in the table.
    let rows =
        t.db.query("SELECT token_hash FROM refresh_tokens", &[])
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row.get::<_, Vec<u8>>(0).len(), 32);
    }
    // No cookie at all.
    let r = t.call(Method::POST, "/auth/refresh", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_token_expires_after_30_days() {
    let t = test_app().await;
    let s = t.login(11).await;
    t.clock.advance(TimeDelta::days(30));
    assert_eq!(
        t.with_cookie("/auth/refresh", &s.refresh_cookie)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn mock_auth_accepts_any_signature_but_enforces_nonces() {
    let mut cfg = test_config();
    cfg.mock_auth = true;
    let t = test_app_with(cfg).await;
    let addr = format!("0x{}", "ab".repeat(32));
    let nonce = t.connect(&addr).await.body["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        verify(&t, &addr, "anything", &nonce).await.status,
        StatusCode::OK
    );
    assert_eq!(
        verify(&t, &addr, "anything", &nonce).await.code(),
        "invalid_nonce"
    );
    assert_eq!(
        verify(&t, &addr, "anything", &"00".repeat(32)).await.code(),
        "invalid_nonce"
    );
}

#[test]
fn production_mode_refuses_mock_auth_and_development_secrets() {
    let strong = || {
        let mut c = ApiConfig::development();
        c.production = true;
        c.jwt_secret = vec![7; 48];
        c.api_key_secret = suiftly_vault::Secret::from_bytes([1; 32]);
        c.key_encryption_key = suiftly_vault::Secret::from_bytes([2; 32]);
        c
    };
    assert_eq!(strong().validate(), Ok(()));
    let mut c = strong();
    c.mock_auth = true;
    assert_eq!(c.validate(), Err(ConfigError::MockAuthInProduction));
    let mut c = strong();
    c.api_key_secret = suiftly_vault::Secret::development();
    assert_eq!(c.validate(), Err(ConfigError::DevSecretInProduction));
    let mut c = strong();
    c.key_encryption_key = suiftly_vault::Secret::from_bytes(suiftly_api::DEV_KEY_ENCRYPTION_KEY);
    assert_eq!(c.validate(), Err(ConfigError::DevEncryptionKeyInProduction));
    let mut c = strong();
    c.jwt_secret = b"short".to_vec();
    assert_eq!(c.validate(), Err(ConfigError::WeakJwtSecret));
    let mut c = strong();
    c.key_encryption_key = suiftly_vault::Secret::from_bytes([1; 32]);
    assert_eq!(c.validate(), Err(ConfigError::SharedKey));
    // Outside production the development defaults and mock auth are allowed.
    let mut dev = ApiConfig::development();
    dev.mock_auth = true;
    assert_eq!(dev.validate(), Ok(()));
}

#[tokio::test]
async fn app_state_refuses_mock_auth_in_production() {
    let conninfo = fresh_database().await;
    let mut cfg = ApiConfig::development();
    cfg.production = true;
    cfg.mock_auth = true;
    let pool = suiftly_api::db::pool(&conninfo, 1).unwrap();
    let err = suiftly_api::AppState::new(
        cfg,
        pool,
        std::sync::Arc::new(suiftly_billing::MockEscrow::new()),
        std::sync::Arc::new(suiftly_api::clock::SystemClock),
        None,
    )
    .err()
    .expect("refused");
    assert_eq!(err, ConfigError::MockAuthInProduction);
}

#[tokio::test]
async fn secure_cookie_in_production() {
    let mut cfg = test_config();
    cfg.production = true;
    cfg.jwt_secret = vec![9; 48];
    cfg.api_key_secret = suiftly_vault::Secret::from_bytes([3; 32]);
    cfg.key_encryption_key = suiftly_vault::Secret::from_bytes([4; 32]);
    let t = test_app_with(cfg).await;
    let (addr, _) = sui::sign_personal_message(&seed(12), b"");
    let nonce = t.connect(&addr).await.body["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, sig) = sui::sign_personal_message(&seed(12), sui::login_message(&nonce).as_bytes());
    let v = verify(&t, &addr, &sig, &nonce).await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(
        v.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
}

/// Issue 15 item 7: presenting a refresh token that was already rotated means it was copied;
/// the whole family is revoked — the attacker's and the victim's tokens, refresh and access.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_whole_family() {
    let t = test_app().await;
    let s = t.login(12).await;
    // The legitimate client rotates once: A → B.
    let r = t.with_cookie("/auth/refresh", &s.refresh_cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let b_cookie = refresh_cookie(&r.headers);
    let b_access = r.body["accessToken"].as_str().unwrap().to_string();
    assert_eq!(t.get("/services", &b_access).await.status, StatusCode::OK);
    // A stolen copy of A is presented: refused, and the family is revoked.
    let r = t.with_cookie("/auth/refresh", &s.refresh_cookie).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t.with_cookie("/auth/refresh", &b_cookie).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "the newest token of the family is revoked too"
    );
    assert_eq!(
        t.get("/services", &b_access).await.status,
        StatusCode::UNAUTHORIZED,
        "access tokens of a revoked family stop working"
    );
    assert_eq!(
        t.get("/services", &s.token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let live: i64 =
        t.db.query_one(
            "SELECT count(*) FROM refresh_tokens WHERE customer_id = $1 AND revoked_at IS NULL",
            &[&s.customer_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 0);
    // Another session (another family) of the same customer is untouched.
    let other = t.login(12).await;
    assert_eq!(
        t.get("/services", &other.token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.with_cookie("/auth/refresh", &other.refresh_cookie)
            .await
            .status,
        StatusCode::OK
    );
}

/// Issue 15 item 8: `customers.status` is enforced: a suspended or closed account can neither
/// use its tokens, nor refresh them, nor log in again; reactivated, it works again.
#[tokio::test]
async fn suspended_and_closed_accounts_lose_access() {
    let t = test_app().await;
    let s = t.login(13).await;
    assert_eq!(t.get("/services", &s.token).await.status, StatusCode::OK);
    for (status, code) in [
        ("suspended", "account_suspended"),
        ("closed", "account_closed"),
    ] {
        t.db.execute(
            "UPDATE customers SET status = $2 WHERE customer_id = $1",
            &[&s.customer_id, &status],
        )
        .await
        .unwrap();
        for r in [
            t.get("/services", &s.token).await,
            t.get("/keys", &s.token).await,
            t.get("/billing/balance", &s.token).await,
            t.with_cookie("/auth/refresh", &s.refresh_cookie).await,
        ] {
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::FORBIDDEN, code),
                "{status}"
            );
        }
        // A fresh login is refused as well.
        let (address, _) = sui::sign_personal_message(&seed(13), b"");
        let c = t.connect(&address).await;
        let nonce = c.body["nonce"].as_str().unwrap().to_string();
        let (_, sig) = sui::sign_personal_message(&seed(13), sui::login_message(&nonce).as_bytes());
        let r = verify(&t, &address, &sig, &nonce).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, code),
            "{status}"
        );
    }
    t.db.execute(
        "UPDATE customers SET status = 'active' WHERE customer_id = $1",
        &[&s.customer_id],
    )
    .await
    .unwrap();
    assert_eq!(t.get("/services", &s.token).await.status, StatusCode::OK);
    assert_eq!(
        t.with_cookie("/auth/refresh", &s.refresh_cookie)
            .await
            .status,
        StatusCode::OK,
        "the refused refreshes did not consume the cookie"
    );
}
