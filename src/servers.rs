//! The process's own endpoints: `/metrics`, `/health` + `POST /admin/sql`, and operator SQL
//! over the PostgreSQL protocol. Each takes an already-bound listener and a stop token and
//! returns when it has finished serving (graceful: in-flight requests complete), so the
//! composition root can wait for it before the embedded PostgreSQL stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusHandle;
use suiftly_ingest::health::Health;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Operator SQL on the admin port (and, with the same token, over pgwire).
pub struct SqlEndpoint {
    pub ctx: suiftly_aggregate::sql::Context,
    pub token: String,
    /// Failed-token back-off shared by `POST /admin/sql` and the PostgreSQL port.
    pub throttle: Arc<suiftly_aggregate::throttle::AuthThrottle>,
}

/// Installs the Prometheus recorder process-wide. Must run before any stage registers its
/// counters: a handle taken before a recorder exists stays a no-op forever.
pub fn install_recorder() -> Result<PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("suiftly_ingest_copy_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    Ok(handle)
}

/// The recorder's periodic upkeep (histogram buckets are drained here), until `stop`.
pub async fn recorder_upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// `GET /metrics` (Prometheus text) until `stop`.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    stop: CancellationToken,
) -> Result<()> {
    use axum::{Router, routing::get};
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    info!(%addr, "metrics at http://{addr}/metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("metrics endpoint")
}

/// The admin endpoint until `stop`: `GET /health` (JSON; 503 while degraded), when the
/// operator SQL context exists `POST /admin/sql`, the routes of other stages (`extra`:
/// the manager's `/manager/...`), and with metering the live tail's internal feed for API
/// replicas, `GET /internal/live` (see [`crate::live_feed`]).
pub async fn serve_admin(
    listener: TcpListener,
    health: Arc<Health>,
    sql: Option<Arc<SqlEndpoint>>,
    extra: Option<axum::Router>,
    feed: Option<Arc<crate::live_feed::InternalFeed>>,
    stop: CancellationToken,
) -> Result<()> {
    use axum::{Json, http::StatusCode, routing::get};
    let addr = listener.local_addr()?;
    let mut app = extra.unwrap_or_default();
    if let Some(feed) = feed {
        app = app.route(
            "/internal/live",
            get(crate::live_feed::internal_live).with_state(feed),
        );
    }
    if let Some(sql) = sql {
        app = app.route(
            "/admin/sql",
            axum::routing::post(crate::admin_sql::handler).with_state(sql),
        );
    }
    let app = app.route(
        "/health",
        get(move || {
            let h = health.clone();
            async move {
                let snap = h.snapshot();
                let code = if snap.status == "ok" {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, Json(snap))
            }
        }),
    );
    info!(%addr, "health at http://{addr}/health");
    // The peer address feeds the operator-token throttle.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("admin endpoint")
}

/// Operator SQL over the PostgreSQL wire protocol (see `suiftly_aggregate::pgwire`) until
/// `stop`; open sessions end with it.
pub async fn serve_pgwire(
    listener: TcpListener,
    sql: Arc<SqlEndpoint>,
    max_connections: usize,
    stop: CancellationToken,
) -> Result<()> {
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        warn!(addr = %bound, "operator SQL (pgwire) on a non-loopback address: authentication is SCRAM, but queries and results are not encrypted");
    }
    info!(addr = %bound, "operator SQL over the PostgreSQL protocol: psql \"host={} port={} user=operator dbname=suiftly\" (password: the operator token)", bound.ip(), bound.port());
    suiftly_aggregate::pgwire::serve(
        listener,
        sql.ctx.clone(),
        suiftly_aggregate::pgwire::PgWireOptions {
            token: sql.token.clone(),
            max_connections,
            throttle: sql.throttle.clone(),
        },
        stop,
    )
    .await;
    Ok(())
}
