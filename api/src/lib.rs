//! The customer API (axum) used by the dashboard: Sui wallet login, services with balance and
//! monthly-limit checks, API keys, and the (mock) escrow.
//!
//! Layout: [`app`] builds the router from one route table ([`routes`]), which the OpenAPI
//! document ([`openapi`]) is checked against; [`run`] serves an already-bound listener until a
//! shutdown future resolves. Handlers live in [`auth`], [`services`], [`keys`], [`billing`];
//! [`error::ApiError`] is the closed set of responses. Pricing and the escrow come from
//! `suiftly-billing`, the key codec from `suiftly-vault`.
//!
//! This crate knows axum and PostgreSQL; it does not know how the database is provisioned or
//! how metrics are exported (the binary installs the recorder and passes a render function).

pub mod auth;
pub mod billing;
pub mod clock;
pub mod db;
pub mod error;
pub mod keys;
pub mod live;
pub mod live_sse;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub mod seal_keys;
pub mod server;
pub mod services;
pub mod static_files;
pub mod stats;
pub mod sui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use suiftly_billing::{Escrow, PriceList};
use suiftly_vault::{ApiKeyCodec, KeyCipher, Secret};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::ratelimit::{RateLimit, RateLimiter};

/// Everything the API is configured with. Secrets arrive already parsed; [`AppState::new`]
/// refuses unsafe combinations in production.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub production: bool,
    /// Accept any wallet signature (nonces are still enforced). Refused in production.
    pub mock_auth: bool,
    pub jwt_secret: Vec<u8>,
    /// SPEC section 6 codec secret.
    pub api_key_secret: Secret,
    /// AES-256-GCM key for full API keys at rest (separate from the codec secret).
    pub key_encryption_key: Secret,
    /// Origin allowed by CORS (with credentials), e.g. `https://app.suiftly.io`.
    pub dashboard_origin: Option<String>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub ip_rate: RateLimit,
    pub customer_rate: RateLimit,
    pub prices: PriceList,
    /// Connection cap, header-read and idle timeouts of the socket server ([`run`]).
    pub server: server::ServerLimits,
    /// The dashboard's build output, served under [`static_files::MOUNT`]; `None`: API only.
    pub dashboard_dir: Option<std::path::PathBuf>,
}

impl ApiConfig {
    /// Development defaults (dev secrets, no production guard): tests and local runs.
    pub fn development() -> ApiConfig {
        ApiConfig {
            production: false,
            mock_auth: false,
            jwt_secret: DEV_JWT_SECRET.to_vec(),
            api_key_secret: Secret::development(),
            key_encryption_key: Secret::from_bytes(DEV_KEY_ENCRYPTION_KEY),
            dashboard_origin: Some("http://localhost:5173".into()),
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            ip_rate: RateLimit {
                per_second: 50,
                burst: 100,
            },
            customer_rate: RateLimit {
                per_second: 20,
                burst: 60,
            },
            prices: PriceList::default(),
            server: server::ServerLimits::default(),
            dashboard_dir: None,
        }
    }
}

/// The development at-rest key (public, like the development codec secret).
pub const DEV_KEY_ENCRYPTION_KEY: [u8; 32] = *b"suiftly-dev-at-rest-key-32-bytes";
const DEV_JWT_SECRET: &[u8] = b"suiftly-development-jwt-secret-not-for-production";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("MOCK_AUTH is refused in production mode")]
    MockAuthInProduction,
    #[error(
        "MOCK_AUTH is refused on the non-loopback address {0}: anyone who can reach it could log in as any wallet (listen on 127.0.0.1 or ::1 for local development)"
    )]
    MockAuthOnPublicAddress(SocketAddr),
    #[error("the development api key secret is refused in production mode")]
    DevSecretInProduction,
    #[error("the development key encryption key is refused in production mode")]
    DevEncryptionKeyInProduction,
    #[error(
        "the jwt secret must be at least 32 bytes (and not the development one) in production mode"
    )]
    WeakJwtSecret,
    #[error("the jwt secret must not be empty")]
    EmptyJwtSecret,
    #[error("the key encryption key must differ from the api key secret")]
    SharedKey,
    #[error("dashboard origin {0:?} is not a valid header value")]
    BadOrigin(String),
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_empty() {
            return Err(ConfigError::EmptyJwtSecret);
        }
        if self.api_key_secret.expose() == self.key_encryption_key.expose() {
            return Err(ConfigError::SharedKey);
        }
        if let Some(o) = &self.dashboard_origin {
            HeaderValue::from_str(o).map_err(|_| ConfigError::BadOrigin(o.clone()))?;
        }
        if self.production {
            if self.mock_auth {
                return Err(ConfigError::MockAuthInProduction);
            }
            if self.api_key_secret.is_development() {
                return Err(ConfigError::DevSecretInProduction);
            }
            if self.key_encryption_key.expose() == &DEV_KEY_ENCRYPTION_KEY {
                return Err(ConfigError::DevEncryptionKeyInProduction);
            }
            if self.jwt_secret.len() < 32 || self.jwt_secret == DEV_JWT_SECRET {
                return Err(ConfigError::WeakJwtSecret);
            }
        }
        Ok(())
    }

    /// MOCK_AUTH accepts any signature: only a loopback listener may serve it, whatever the
    /// mode.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if self.mock_auth && !addr.ip().is_loopback() {
            return Err(ConfigError::MockAuthOnPublicAddress(addr));
        }
        Ok(())
    }
}

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

pub struct Inner {
    pub config: ApiConfig,
    pub pool: deadpool_postgres::Pool,
    pub escrow: Arc<dyn Escrow>,
    pub clock: Arc<dyn Clock>,
    pub codec: ApiKeyCodec,
    pub cipher: KeyCipher,
    pub jwt: auth::JwtKeys,
    pub ip_limiter: RateLimiter<std::net::IpAddr>,
    pub customer_limiter: RateLimiter<i32>,
    pub metrics: Option<MetricsRender>,
    /// The live tail (stats' open bucket, `/stats/live`); `None`: settled tables only.
    pub live: Option<LiveHandle>,
}

/// The live hub an API serves from, and the token that ends its streams (fired when the
/// server starts its graceful shutdown: open streams would otherwise keep it waiting).
#[derive(Clone)]
pub struct LiveHandle {
    pub hub: Arc<live::LiveHub>,
    pub stop: tokio_util::sync::CancellationToken,
}

/// Shared state of every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: ApiConfig,
        pool: deadpool_postgres::Pool,
        escrow: Arc<dyn Escrow>,
        clock: Arc<dyn Clock>,
        metrics: Option<MetricsRender>,
    ) -> Result<AppState, ConfigError> {
        config.validate()?;
        Ok(AppState(Arc::new(Inner {
            codec: ApiKeyCodec::new(&config.api_key_secret),
            cipher: KeyCipher::new(&config.key_encryption_key),
            jwt: auth::JwtKeys::new(&config.jwt_secret),
            ip_limiter: RateLimiter::new(config.ip_rate),
            customer_limiter: RateLimiter::new(config.customer_rate),
            config,
            pool,
            escrow,
            clock,
            metrics,
            live: None,
        })))
    }

    /// Serves the live tail from `hub` (before the state is shared: call right after
    /// [`AppState::new`]).
    pub fn with_live(mut self, hub: Arc<live::LiveHub>) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("with_live before the state is cloned")
            .live = Some(LiveHandle {
            hub,
            stop: tokio_util::sync::CancellationToken::new(),
        });
        self
    }
}

/// One route: the single source for the router and for the OpenAPI consistency test.
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

fn r(method: Method, path: &'static str, handler: MethodRouter<AppState>) -> RouteDef {
    RouteDef {
        method,
        path,
        handler,
    }
}

/// Every route the API serves.
pub fn routes() -> Vec<RouteDef> {
    use Method as M;
    vec![
        r(M::GET, "/health", get(health)),
        r(M::GET, "/openapi.json", get(openapi_json)),
        r(M::POST, "/auth/connect", post(auth::connect)),
        r(M::POST, "/auth/verify", post(auth::verify)),
        r(M::POST, "/auth/refresh", post(auth::refresh)),
        r(M::POST, "/auth/logout", post(auth::logout)),
        r(M::GET, "/services", get(services::list)),
        r(M::GET, "/services/{service}", get(services::get_one)),
        r(
            M::PUT,
            "/services/{service}/config",
            put(services::update_config),
        ),
        r(
            M::POST,
            "/services/{service}/enable",
            post(services::enable),
        ),
        r(
            M::POST,
            "/services/{service}/disable",
            post(services::disable),
        ),
        r(
            M::PUT,
            "/services/{service}/tier",
            put(services::change_tier),
        ),
        r(M::POST, "/services/{service}/quote", post(services::quote)),
        r(M::GET, "/keys", get(keys::list)),
        r(M::POST, "/keys", post(keys::create)),
        r(M::POST, "/keys/{key_id}/regenerate", post(keys::regenerate)),
        r(M::DELETE, "/keys/{key_id}", delete(keys::revoke)),
        r(M::GET, "/billing/balance", get(billing::balance)),
        r(M::POST, "/billing/deposit", post(billing::deposit)),
        r(M::POST, "/billing/withdraw", post(billing::withdraw)),
        r(M::PUT, "/billing/limit", put(billing::set_limit)),
        r(M::GET, "/billing/invoices", get(billing::invoices)),
        r(
            M::GET,
            "/billing/invoices/{invoice_id}",
            get(billing::invoice),
        ),
        r(M::GET, "/billing/current", get(billing::current)),
        r(M::GET, "/billing/transactions", get(billing::transactions)),
        r(M::GET, "/stats/summary", get(stats::summary)),
        r(M::GET, "/stats/traffic", get(stats::traffic)),
        r(M::GET, "/stats/usage", get(stats::usage)),
        r(M::GET, "/stats/bandwidth", get(stats::bandwidth)),
        r(M::GET, "/stats/response-time", get(stats::response_time)),
        r(M::GET, "/stats/live", get(live_sse::stream)),
        r(M::GET, "/seal-keys", get(seal_keys::list)),
        r(M::POST, "/seal-keys", post(seal_keys::create)),
        r(
            M::DELETE,
            "/seal-keys/{seal_key_id}",
            delete(seal_keys::delete),
        ),
        r(
            M::GET,
            "/seal-keys/{seal_key_id}/packages",
            get(seal_keys::packages),
        ),
        r(
            M::POST,
            "/seal-keys/{seal_key_id}/packages",
            post(seal_keys::add_package),
        ),
        r(
            M::DELETE,
            "/seal-keys/{seal_key_id}/packages/{package_id}",
            delete(seal_keys::remove_package),
        ),
    ]
}

/// (method, path) of every route, for the OpenAPI check.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|d| (d.method, d.path)).collect()
}

/// The router with every cross-cutting layer.
pub fn app(state: AppState) -> Router {
    let cfg = &state.config;
    let dashboard = cfg.dashboard_dir.as_deref().map(static_files::router);
    let mut router: Router<AppState> = Router::new();
    for def in routes() {
        router = router.route(def.path, def.handler);
    }
    let cors = match &cfg.dashboard_origin {
        Some(origin) => CorsLayer::new()
            .allow_origin(AllowOrigin::list([
                HeaderValue::from_str(origin).expect("validated in ApiConfig::validate")
            ]))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .max_age(Duration::from_secs(600)),
        None => CorsLayer::new(),
    };
    router
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::ip_rate_limit,
        ))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(axum::middleware::from_fn(middleware::track_metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(cors)
        .with_state(state)
        .merge(dashboard.unwrap_or_default())
}

/// Serves `app(state)` on an already-bound listener until `shutdown` resolves, then drains,
/// under the connection cap and timeouts of `config.server` (see [`server`]). Refuses to
/// serve MOCK_AUTH on a non-loopback address.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    state.config.check_listen(listener.local_addr()?)?;
    let limits = state.config.server;
    // Live streams never end by themselves: end them when the shutdown starts, so the
    // graceful drain can finish.
    let streams = state.live.as_ref().map(|l| l.stop.clone());
    let shutdown = async move {
        shutdown.await;
        if let Some(s) = streams {
            s.cancel();
        }
    };
    server::serve(listener, app(state), limits, shutdown).await?;
    Ok(())
}

/// Prometheus text for a separate, non-public listener (`api.metrics_listen`): the customer
/// API port does not serve `/metrics`.
pub fn metrics_router(render: MetricsRender) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    render(),
                )
            }
        }),
    )
}

async fn fallback() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> Response {
    let mut resp = ApiError::InvalidRequest("method not allowed".into()).into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

async fn health(State(state): State<AppState>) -> Response {
    let ok = match state.pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": if ok { "ok" } else { "unreachable" },
    });
    (status, Json(body)).into_response()
}

/// Serialized once: the document is static for the life of the process.
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    let bytes = DOC
        .get_or_init(|| {
            serde_json::to_vec(&openapi::document())
                .expect("json")
                .into()
        })
        .clone();
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// `Query<T>` whose rejections are [`ApiError`]s (JSON bodies).
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(rej) => Err(ApiError::InvalidRequest(rej.body_text())),
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (JSON bodies, 413 for oversized bodies).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(rej.into()),
        }
    }
}
