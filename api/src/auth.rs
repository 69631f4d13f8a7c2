//! Wallet login (SPEC section 8): challenge nonces, Sui signature verification, HS256 access
//! tokens (15 min) and refresh tokens (30 days, httpOnly cookie, stored hashed, rotated on use).
//!
//! Sessions are token families: a login starts a family, every refresh rotates within it.
//! Presenting a refresh token that was already rotated (or revoked) means it was copied — by a
//! thief or from a leaked cookie — so the whole family is revoked and both parties must log in
//! again (reuse detection, RFC 6819 §5.2.2.3 / OAuth 2.0 Security BCP §4.14). Access tokens
//! carry their family; every authenticated request checks that the family still has a live
//! refresh token and that the customer's account is `active` (a suspended or closed account
//! has no access), in one indexed query.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::{AppState, JsonBody, sui};

pub const ACCESS_TTL: TimeDelta = TimeDelta::minutes(15);
pub const REFRESH_TTL: TimeDelta = TimeDelta::days(30);
pub const NONCE_TTL: TimeDelta = TimeDelta::minutes(10);
pub const REFRESH_COOKIE: &str = "suiftly_refresh";

pub struct JwtKeys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        JwtKeys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// "access" or "refresh": a refresh token is never accepted as an access token.
    pub typ: String,
    pub jti: String,
    /// The session (token family), hex; revoking the family ends its access tokens too.
    #[serde(default)]
    pub fam: String,
}

fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(ApiError::internal)?;
    Ok(hex::encode(b))
}

pub fn issue(
    state: &AppState,
    customer_id: i32,
    family: &[u8],
    typ: &str,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    let ttl = if typ == "refresh" {
        REFRESH_TTL
    } else {
        ACCESS_TTL
    };
    let claims = Claims {
        sub: customer_id.to_string(),
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
        typ: typ.into(),
        jti: random_hex(16)?,
        fam: hex::encode(family),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &state.jwt.enc)
        .map_err(ApiError::internal)
}

/// Checks signature, algorithm (HS256 only: `alg: none` and others are refused), type and
/// expiry against the injected clock. Returns the customer and the token family.
pub fn validate(state: &AppState, token: &str, typ: &str) -> Result<(i32, Vec<u8>), ApiError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_exp = false; // checked below with the injected clock
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(token, &state.jwt.dec, &v)
        .map_err(|_| ApiError::Unauthorized)?;
    let c = data.claims;
    if c.typ != typ || c.exp <= state.clock.now().timestamp() {
        return Err(ApiError::Unauthorized);
    }
    let family = hex::decode(&c.fam)
        .ok()
        .filter(|f| f.len() == FAMILY_BYTES)
        .ok_or(ApiError::Unauthorized)?;
    let id = c
        .sub
        .parse::<i32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::Unauthorized)?;
    Ok((id, family))
}

/// Bytes of a token family id.
pub const FAMILY_BYTES: usize = 16;

fn new_family() -> Result<Vec<u8>, ApiError> {
    let mut b = vec![0u8; FAMILY_BYTES];
    getrandom::fill(&mut b).map_err(ApiError::internal)?;
    Ok(b)
}

/// `active`, or the error for a suspended or closed account.
fn account_open(status: &str) -> Result<(), ApiError> {
    match status {
        "active" => Ok(()),
        "suspended" => Err(ApiError::AccountSuspended),
        _ => Err(ApiError::AccountClosed),
    }
}

/// The authenticated customer of a request (from `Authorization: Bearer <access token>`).
/// Also applies the per-customer rate limit.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub customer_id: i32,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        caller_from_token(state, token).await
    }
}

/// Every check of [`Caller`] on an access token however it arrived (the live stream also
/// takes it from a query parameter, for `EventSource`).
pub async fn caller_from_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let (customer_id, family) = validate(state, token.trim(), "access")?;
    let now = state.clock.now();
    if !state.customer_limiter.check(&customer_id, now) {
        metrics::counter!("suiftly_api_rate_limited_total", "scope" => "customer").increment(1);
        return Err(ApiError::RateLimited);
    }
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT c.status, EXISTS (SELECT 1 FROM refresh_tokens r \
                     WHERE r.family_id = $2 AND r.customer_id = $1 \
                       AND r.revoked_at IS NULL AND r.expires_at > $3) \
                 FROM customers c WHERE c.customer_id = $1",
            &[&customer_id, &family, &now],
        )
        .await?
        .ok_or(ApiError::Unauthorized)?;
    account_open(row.get(0))?;
    if !row.get::<_, bool>(1) {
        // Logged out, or the family was revoked after a refresh-token reuse.
        return Err(ApiError::Unauthorized);
    }
    Ok(Caller { customer_id })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectRequest {
    pub wallet_address: String,
}

fn checked_address(a: &str) -> Result<String, ApiError> {
    let lower = a.to_ascii_lowercase();
    if !sui::is_wallet_address(&lower) {
        return Err(ApiError::InvalidRequest(
            "walletAddress must be 0x followed by 64 hex characters".into(),
        ));
    }
    Ok(lower)
}

pub async fn connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ConnectRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let address = checked_address(&req.wallet_address)?;
    let now = state.clock.now();
    let client = state.pool.get().await?;
    client
        .execute("DELETE FROM auth_nonces WHERE expires_at <= $1", &[&now])
        .await?;
    let existing = client
        .query_opt(
            "SELECT nonce, expires_at FROM auth_nonces
             WHERE wallet_address = $1 AND used_at IS NULL AND expires_at > $2
             ORDER BY expires_at DESC LIMIT 1",
            &[&address, &now],
        )
        .await?;
    let (nonce, expires_at): (String, DateTime<Utc>) = match existing {
        Some(row) => (row.get(0), row.get(1)),
        None => {
            let nonce = random_hex(32)?;
            let expires_at = now + NONCE_TTL;
            client
                .execute(
                    "INSERT INTO auth_nonces (nonce, wallet_address, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                    &[&nonce, &address, &now, &expires_at],
                )
                .await?;
            (nonce, expires_at)
        }
    };
    Ok(Json(json!({
        "nonce": nonce,
        "message": sui::login_message(&nonce),
        "expiresAt": expires_at.to_rfc3339(),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    pub wallet_address: String,
    pub signature: String,
    pub nonce: String,
}

pub async fn verify(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Response, ApiError> {
    let address = checked_address(&req.wallet_address)?;
    let now = state.clock.now();
    let mut client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT expires_at, used_at IS NOT NULL FROM auth_nonces WHERE nonce = $1 AND wallet_address = $2",
            &[&req.nonce, &address],
        )
        .await?
        .ok_or(ApiError::InvalidNonce)?;
    let expires_at: DateTime<Utc> = row.get(0);
    let used: bool = row.get(1);
    if used || expires_at <= now {
        return Err(ApiError::InvalidNonce);
    }
    if !state.config.mock_auth {
        sui::verify_personal_message(
            &address,
            sui::login_message(&req.nonce).as_bytes(),
            &req.signature,
        )
        .map_err(|_| ApiError::InvalidSignature)?;
    }
    let tx = client.transaction().await?;
    // Single use: the first verify to flip used_at wins; a concurrent replay sees 0 rows.
    let consumed = tx
        .execute(
            "UPDATE auth_nonces SET used_at = $2 WHERE nonce = $1 AND used_at IS NULL AND expires_at > $2",
            &[&req.nonce, &now],
        )
        .await?;
    if consumed != 1 {
        return Err(ApiError::InvalidNonce);
    }
    let customer_id = find_or_create_customer(&tx, &address, now).await?;
    let status: String = tx
        .query_one(
            "SELECT status FROM customers WHERE customer_id = $1",
            &[&customer_id],
        )
        .await?
        .get(0);
    if let Err(e) = account_open(&status) {
        // The nonce stays consumed: a refused login is not retried with the same signature.
        tx.commit().await?;
        return Err(e);
    }
    let family = new_family()?;
    let refresh = issue(&state, customer_id, &family, "refresh", now)?;
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, customer_id, created_at, expires_at, family_id) VALUES ($1, $2, $3, $4, $5)",
        &[&token_hash(&refresh), &customer_id, &now, &(now + REFRESH_TTL), &family],
    )
    .await?;
    tx.commit().await?;
    session_response(&state, customer_id, &family, &address, &refresh, now)
}

async fn find_or_create_customer(
    tx: &deadpool_postgres::Transaction<'_>,
    address: &str,
    now: DateTime<Utc>,
) -> Result<i32, ApiError> {
    for _ in 0..8 {
        if let Some(row) = tx
            .query_opt(
                "SELECT customer_id FROM customers WHERE wallet_address = $1",
                &[&address],
            )
            .await?
        {
            return Ok(row.get(0));
        }
        // Random id in [1, 2^31 - 1] (SPEC section 8): ids do not reveal how many customers exist.
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(ApiError::internal)?;
        let id = (u32::from_be_bytes(b) & 0x7fff_ffff).max(1) as i32;
        let month_start = now.date_naive().with_day0(0).expect("day 1 exists");
        tx.execute(
            "INSERT INTO customers (customer_id, wallet_address, current_month_start, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            &[&id, &address, &month_start, &now],
        )
        .await?;
    }
    Err(ApiError::internal("could not allocate a customer id"))
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn refresh_cookie(state: &AppState, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.config.production {
        "; Secure"
    } else {
        ""
    };
    let c = format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/auth; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&c).expect("token is a header-safe jwt")
}

fn session_response(
    state: &AppState,
    customer_id: i32,
    family: &[u8],
    address: &str,
    refresh: &str,
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let access = issue(state, customer_id, family, "access", now)?;
    let body = json!({
        "accessToken": access,
        "tokenType": "Bearer",
        "expiresIn": ACCESS_TTL.num_seconds(),
        "walletAddress": address,
    });
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        refresh_cookie(state, refresh, REFRESH_TTL.num_seconds()),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Exchanges a valid refresh cookie for a new access token and a new refresh token of the same
/// family (the old one is revoked). A cookie that was already rotated or revoked is a copy:
/// the whole family is revoked (committed) and the request refused.
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = cookie_value(&headers, REFRESH_COOKIE).ok_or(ApiError::Unauthorized)?;
    let (customer_id, _) = validate(&state, &token, "refresh")?;
    let now = state.clock.now();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT family_id, revoked_at IS NOT NULL, expires_at > $3 FROM refresh_tokens
             WHERE token_hash = $1 AND customer_id = $2 FOR UPDATE",
            &[&token_hash(&token), &customer_id, &now],
        )
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let family: Vec<u8> = row.get(0);
    if row.get::<_, bool>(1) {
        let revoked = tx
            .execute(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
                &[&family, &now],
            )
            .await?;
        tx.commit().await?;
        metrics::counter!("suiftly_api_refresh_token_reuse_total").increment(1);
        tracing::warn!(
            customer_id,
            revoked,
            "refresh token reused after rotation: session family revoked"
        );
        return Err(ApiError::Unauthorized);
    }
    if !row.get::<_, bool>(2) {
        return Err(ApiError::Unauthorized);
    }
    let c = tx
        .query_one(
            "SELECT wallet_address, status FROM customers WHERE customer_id = $1",
            &[&customer_id],
        )
        .await?;
    let address: String = c.get(0);
    // A suspended or closed account gets no new tokens; the cookie stays as it was (rolled
    // back), so a reactivated account can still use it.
    account_open(c.get(1))?;
    tx.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE token_hash = $1",
        &[&token_hash(&token), &now],
    )
    .await?;
    let new_refresh = issue(&state, customer_id, &family, "refresh", now)?;
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, customer_id, created_at, expires_at, family_id) VALUES ($1, $2, $3, $4, $5)",
        &[&token_hash(&new_refresh), &customer_id, &now, &(now + REFRESH_TTL), &family],
    )
    .await?;
    tx.commit().await?;
    session_response(&state, customer_id, &family, &address, &new_refresh, now)
}

/// Ends the session of the cookie (if any): its whole token family is revoked, so the access
/// tokens issued in it stop working too. Clears the cookie. Always 204.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = cookie_value(&headers, REFRESH_COOKIE) {
        let now = state.clock.now();
        let client = state.pool.get().await?;
        client
            .execute(
                "UPDATE refresh_tokens SET revoked_at = $2
                 WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
                   AND revoked_at IS NULL",
                &[&token_hash(&token), &now],
            )
            .await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, refresh_cookie(&state, "", 0));
    Ok(resp)
}
