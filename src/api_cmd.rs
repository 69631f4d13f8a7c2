//! `suiftly api`: serve the customer API until SIGTERM / ctrl-c.
//!
//! Order: signal handlers, secrets from the environment, the escrow guard, metrics recorder,
//! database (DATABASE_URL or embedded) + migrations, the persistent escrow mock (its own tables
//! and pool), bind, serve; on the signal: stop accepting, drain in-flight requests, stop the
//! embedded PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use suiftly_api::ratelimit::RateLimit;
use suiftly_api::{ApiConfig, AppState};
use suiftly_billing::PriceList;
use suiftly_escrow::PgMockEscrow;
use suiftly_vault::Secret;
use tracing::{info, warn};

use crate::config::{ApiSection, Config};
use crate::database::Database;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A hex secret from the environment; the development value outside production, an error in
/// it.
fn hex_secret(name: &str, dev: Secret, production: bool) -> Result<Secret> {
    match env(name) {
        Some(v) => Secret::from_hex(&v, production).with_context(|| name.to_string()),
        None if production => anyhow::bail!("{name} must be set in production mode"),
        None => {
            warn!("{name} not set: using the public development value");
            Ok(dev)
        }
    }
}

/// The key-encryption key of `api_keys.encrypted_key` (`SUIFTLY_KEY_ENCRYPTION_KEY`): the API
/// seals with it, the manager's vault step opens with it.
pub fn key_encryption_key(production: bool) -> Result<Secret> {
    hex_secret(
        "SUIFTLY_KEY_ENCRYPTION_KEY",
        Secret::from_bytes(suiftly_api::DEV_KEY_ENCRYPTION_KEY),
        production,
    )
}

/// Builds the API configuration from `[api]` and the secret environment variables. Missing
/// secrets fall back to development values outside production and are an error in it.
pub fn api_config(s: &ApiSection) -> Result<ApiConfig> {
    let production = s.production;
    let jwt_secret = match env("SUIFTLY_JWT_SECRET") {
        Some(v) => v.into_bytes(),
        None if production => anyhow::bail!("SUIFTLY_JWT_SECRET must be set in production mode"),
        None => {
            warn!(
                "SUIFTLY_JWT_SECRET not set: using a random per-process secret (sessions end on restart)"
            );
            let mut b = vec![0u8; 32];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("system randomness: {e}"))?;
            b
        }
    };
    let cfg = ApiConfig {
        production,
        mock_auth: env("MOCK_AUTH").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes")),
        jwt_secret,
        api_key_secret: hex_secret("SUIFTLY_API_KEY_SECRET", Secret::development(), production)?,
        key_encryption_key: key_encryption_key(production)?,
        dashboard_origin: Some(s.dashboard_origin.clone()),
        max_body_bytes: s.max_body_bytes,
        request_timeout: Duration::from_millis(s.request_timeout_ms),
        ip_rate: RateLimit {
            per_second: s.ip_requests_per_second,
            burst: s.ip_burst,
        },
        customer_rate: RateLimit {
            per_second: s.customer_requests_per_second,
            burst: s.customer_burst,
        },
        prices: PriceList::default(),
        server: suiftly_api::server::ServerLimits {
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(s.idle_timeout_ms),
            max_connections: s.max_connections,
        },
        dashboard_dir: match suiftly_api::static_files::check(&s.dashboard_dir) {
            Ok(()) => Some(s.dashboard_dir.clone()),
            Err(e) => {
                warn!("serving the api without the dashboard: {e}");
                None
            }
        },
    };
    cfg.validate().context("api configuration")?;
    if cfg.mock_auth {
        warn!("MOCK_AUTH is on: any wallet signature is accepted (development only)");
    }
    Ok(cfg)
}

/// The API's state on `conninfo` (already migrated): configuration, pool, escrow, and the
/// live tail when `hub` is given. Shared by `suiftly api` and the API stage of `suiftly run`.
pub async fn build_state(
    cfg: &Config,
    api_cfg: ApiConfig,
    conninfo: &str,
    metrics: Option<suiftly_api::MetricsRender>,
    hub: Option<Arc<suiftly_api::live::LiveHub>>,
) -> Result<AppState> {
    let pool = suiftly_api::db::pool(conninfo, cfg.api.db_pool_size)?;
    let escrow = Arc::new(PgMockEscrow::new(suiftly_api::db::pool(
        conninfo,
        cfg.escrow.pool_size,
    )?));
    let state = AppState::new(
        api_cfg,
        pool,
        escrow,
        Arc::new(suiftly_api::clock::SystemClock),
        metrics,
    )?;
    Ok(match hub {
        Some(h) => state.with_live(h),
        None => state,
    })
}

pub async fn run(cfg: Config) -> Result<()> {
    let mut signals = crate::signals::Signals::new()?;
    // Secrets and production checks first: a refused configuration never starts a database.
    let api_cfg = api_config(&cfg.api)?;
    cfg.escrow
        .check_production(api_cfg.production)
        .context("escrow configuration")?;
    let armed = suiftly_escrow::failpoint::arm_from_env(api_cfg.production)?;
    if !armed.is_empty() {
        warn!(points = ?armed, "test failpoints armed: this process kills itself at them");
    }
    let prom = crate::servers::install_recorder()?;
    let db = tokio::task::block_in_place(|| Database::open(&cfg))?;
    db.migrate().await?;
    // A replica's live tail: the metering process's internal feed.
    let stop_live = tokio_util::sync::CancellationToken::new();
    let mut live_tasks = Vec::new();
    let hub = match &cfg.api.live.source {
        Some(source) => {
            let hub = suiftly_api::live::LiveHub::new(cfg.api.live.options());
            let token = cfg.operator_token(false).context(
                "api.live.source needs the metering process's operator token (SUIFTLY_OPERATOR_TOKEN or admin.operator_token_file)",
            )?;
            live_tasks.push(tokio::spawn(crate::live_feed::follow(
                source.clone(),
                token,
                hub.clone(),
                stop_live.clone(),
            )));
            live_tasks.push(tokio::spawn(crate::live_feed::flush_loop(
                hub.clone(),
                stop_live.clone(),
            )));
            Some(hub)
        }
        None => {
            warn!(
                "api.live.source not set: no live tail (stats from the settled tables only, no /stats/live)"
            );
            None
        }
    };
    let render = prom.clone();
    let state = build_state(
        &cfg,
        api_cfg,
        &db.conninfo,
        Some(Arc::new(move || render.render())),
        hub,
    )
    .await?;
    let dashboard = state.config.dashboard_dir.is_some();
    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .with_context(|| format!("binding api.listen {}", cfg.api.listen))?;
    state.config.check_listen(listener.local_addr()?)?;
    let addr = listener.local_addr()?;
    info!(%addr, "api listening");
    if dashboard {
        info!(url = %format!("http://{addr}/app/"), "dashboard served");
    }
    // /metrics on its own listener (loopback by default), never on the public port.
    let metrics_listener = tokio::net::TcpListener::bind(&cfg.api.metrics_listen)
        .await
        .with_context(|| format!("binding api.metrics_listen {}", cfg.api.metrics_listen))?;
    info!(addr = %metrics_listener.local_addr()?, "api metrics at /metrics");
    let metrics_render = state.metrics.clone();
    let metrics_server = tokio::spawn(async move {
        if let Some(render) = metrics_render {
            let _ = axum::serve(metrics_listener, suiftly_api::metrics_router(render)).await;
        }
    });
    let stop_upkeep = tokio_util::sync::CancellationToken::new();
    let upkeep = tokio::spawn(crate::servers::recorder_upkeep(prom, stop_upkeep.clone()));
    let shutdown = async move {
        signals.recv().await;
        info!("shutdown requested; ending live streams, draining in-flight requests");
    };
    suiftly_api::run(listener, state, shutdown).await?;
    stop_live.cancel();
    for t in live_tasks {
        t.await.context("live tail task")?;
    }
    metrics_server.abort();
    stop_upkeep.cancel();
    upkeep.await.context("metrics upkeep task")?;
    info!("api stopped");
    if let Some(mut c) = db.cluster {
        tokio::task::block_in_place(|| c.stop())?;
        info!("embedded postgresql stopped");
    }
    Ok(())
}
