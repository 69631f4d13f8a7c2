//! Shared harness: one private PostgreSQL per test binary (never skipped: a test fails loudly
//! when the server cannot start), a fresh migrated database per test, and helpers that drive
//! the router with `oneshot`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use pgcluster::PgCluster;
use serde_json::{Value, json};
use suiftly_api::clock::ManualClock;
use suiftly_api::ratelimit::RateLimit;
use suiftly_api::{ApiConfig, AppState, app, sui};
use suiftly_escrow::PgMockEscrow;
use tokio_postgres::NoTls;
use tower::ServiceExt;

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn cluster() -> &'static PgCluster {
    CLUSTER.get_or_init(|| {
        PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"))
    })
}

pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test postgresql: {e}"));
    tokio::spawn(conn);
    client
}

/// A fresh, migrated database in the shared cluster; returns its conninfo.
pub async fn fresh_database() -> String {
    let cluster = cluster();
    let name = format!(
        "api_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let admin = connect(&cluster.connection_string()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let conninfo = cluster.connection_string_for(&name);
    let mut client = connect(&conninfo).await;
    let applied = suiftly_migrations::migrate(&mut client).await.unwrap();
    assert!(applied.contains(&10) && applied.contains(&11) && applied.contains(&12));
    conninfo
}

/// Test configuration: development secrets, limits off (rate-limit tests turn them on).
pub fn test_config() -> ApiConfig {
    let mut cfg = ApiConfig::development();
    cfg.ip_rate = RateLimit {
        per_second: 0,
        burst: 0,
    };
    cfg.customer_rate = RateLimit {
        per_second: 0,
        burst: 0,
    };
    cfg
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    /// The persistent escrow mock (its own tables in the test database).
    pub escrow: Arc<PgMockEscrow>,
    pub db: tokio_postgres::Client,
    pub conninfo: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub struct Session {
    pub token: String,
    pub refresh_cookie: String,
    pub address: String,
    pub customer_id: i32,
}

pub async fn test_app() -> TestApp {
    test_app_with(test_config()).await
}

pub async fn test_app_with(cfg: ApiConfig) -> TestApp {
    let conninfo = fresh_database().await;
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap(),
    ));
    app_on(conninfo, cfg, clock, None).await
}

/// An app over an existing database (`escrow`: the persistent mock unless another is given).
pub async fn app_on(
    conninfo: String,
    cfg: ApiConfig,
    clock: Arc<ManualClock>,
    escrow: Option<Arc<dyn suiftly_billing::Escrow>>,
) -> TestApp {
    let pool = suiftly_api::db::pool(&conninfo, 4).unwrap();
    let mock = Arc::new(PgMockEscrow::new(
        suiftly_api::db::pool(&conninfo, 2).unwrap(),
    ));
    let state = AppState::new(
        cfg,
        pool,
        escrow.unwrap_or_else(|| mock.clone()),
        clock.clone(),
        Some(Arc::new(|| "# metrics\n".to_string())),
    )
    .unwrap();
    TestApp {
        router: app(state.clone()),
        state,
        clock,
        escrow: mock,
        db: connect(&conninfo).await,
        conninfo,
    }
}

impl TestApp {
    /// The same database seen by a new process (new pools, a new escrow mock instance).
    pub async fn restarted(&self) -> TestApp {
        app_on(
            self.conninfo.clone(),
            self.state.config.clone(),
            self.clock.clone(),
            None,
        )
        .await
    }
}

pub fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

impl TestApp {
    pub async fn raw(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&v).unwrap()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    /// POST with the refresh cookie.
    pub async fn with_cookie(&self, path: &str, cookie: &str) -> Resp {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        self.raw(req).await
    }

    pub async fn connect(&self, address: &str) -> Resp {
        self.call(
            Method::POST,
            "/auth/connect",
            None,
            Some(json!({ "walletAddress": address })),
        )
        .await
    }

    /// Full wallet login with the Ed25519 key of `seed(n)`.
    pub async fn login(&self, n: u8) -> Session {
        let (address, _) = sui::sign_personal_message(&seed(n), b"");
        let c = self.connect(&address).await;
        assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
        let nonce = c.body["nonce"].as_str().unwrap().to_string();
        let message = c.body["message"].as_str().unwrap();
        assert_eq!(message, sui::login_message(&nonce));
        let (_, signature) = sui::sign_personal_message(&seed(n), message.as_bytes());
        let v = self
            .call(
                Method::POST,
                "/auth/verify",
                None,
                Some(json!({ "walletAddress": address, "signature": signature, "nonce": nonce })),
            )
            .await;
        assert_eq!(v.status, StatusCode::OK, "{:?}", v.body);
        let cookie = refresh_cookie(&v.headers);
        let customer_id = self
            .db
            .query_one(
                "SELECT customer_id FROM customers WHERE wallet_address = $1",
                &[&address],
            )
            .await
            .unwrap()
            .get(0);
        Session {
            token: v.body["accessToken"].as_str().unwrap().to_string(),
            refresh_cookie: cookie,
            address,
            customer_id,
        }
    }

    pub async fn deposit(&self, s: &Session, cents: i64) {
        let r = self
            .post(
                "/billing/deposit",
                &s.token,
                json!({ "amount_usd_cents": cents }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

/// `name=value` of the Set-Cookie header (the part a browser sends back).
pub fn refresh_cookie(headers: &HeaderMap) -> String {
    let set = headers
        .get(header::SET_COOKIE)
        .expect("set-cookie")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_string()
}
