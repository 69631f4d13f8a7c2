//! `POST /admin/sql` (operator SQL over DataFusion, read-only, Bearer token) and the
//! `suiftly sql` / `suiftly audit` commands.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suiftly_aggregate::sql::{Format, SqlError};

use crate::config::Config;
use crate::pipeline::SqlEndpoint;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<Format>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// Constant-time comparison: the token must not leak through response timing.
fn token_matches(given: &str, want: &str) -> bool {
    let (a, b) = (given.as_bytes(), want.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Shortest operator token accepted (the generated ones have 48 hex characters).
pub const MIN_OPERATOR_TOKEN_CHARS: usize = 32;

/// A token an attacker could guess is refused at start-up.
pub fn check_operator_token(token: &str, source: &str) -> Result<()> {
    anyhow::ensure!(
        token.chars().count() >= MIN_OPERATOR_TOKEN_CHARS,
        "the operator token from {source} has {} characters; at least {MIN_OPERATOR_TOKEN_CHARS} are required (delete the token file to have a random one generated)",
        token.chars().count()
    );
    Ok(())
}

/// The token file must be readable by its owner only (it is the operator SQL password).
pub fn check_operator_token_file(path: &std::path::Path, token: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "the operator token file {} has mode {:o}: group and others must have no access (chmod 600 it)",
        path.display(),
        mode & 0o777
    );
    check_operator_token(token, &path.display().to_string())
}

pub async fn handler(
    State(ep): State<Arc<SqlEndpoint>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let now = std::time::Instant::now();
    if let Err(wait) = ep.throttle.check(peer.ip(), now) {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            &format!(
                "too many failed operator-token attempts from this address: retry in {} s",
                wait.as_secs().max(1)
            ),
        );
        if let Ok(v) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing operator token (Authorization: Bearer <token>)",
        );
    };
    let given = auth.strip_prefix("Bearer ").unwrap_or("");
    if !token_matches(given.trim(), &ep.token) {
        ep.throttle.failed(peer.ip(), now);
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid operator token",
        );
    }
    ep.throttle.succeeded(peer.ip());
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("expected JSON {{\"sql\": \"...\", \"format\": \"json|csv|table\"}}: {e}"),
            );
        }
    };
    let format = req.format.unwrap_or(Format::Json);
    let started = std::time::Instant::now();
    // Bounded inside: memory, result rows and bytes, statement timeout (admin.sql_*).
    let result = suiftly_aggregate::sql::query(&ep.ctx, &req.sql).await;
    metrics::histogram!("suiftly_admin_sql_seconds").record(started.elapsed().as_secs_f64());
    let batches = match result {
        Ok(b) => b,
        Err(SqlError::ReadOnly(m)) => {
            metrics::counter!("suiftly_admin_sql_refused_total").increment(1);
            return error(
                StatusCode::FORBIDDEN,
                "read_only",
                &format!("read-only: {m}"),
            );
        }
        Err(SqlError::Query(m)) => return error(StatusCode::BAD_REQUEST, "sql_error", &m),
        Err(SqlError::Limit(m)) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "limit_exceeded", &m);
        }
        Err(SqlError::Timeout(m)) => return error(StatusCode::GATEWAY_TIMEOUT, "timeout", &m),
        Err(e @ SqlError::Postgres(_)) => {
            tracing::warn!(error = %e, "operator query failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database did not answer",
            );
        }
    };
    match suiftly_aggregate::sql::render(&batches, format) {
        Ok(body) => {
            let ct = match format {
                Format::Json => "application/json",
                Format::Csv => "text/csv; charset=utf-8",
                Format::Table => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "sql_error", &e.to_string()),
    }
}

#[derive(clap::Args)]
pub struct SqlArgs {
    /// The query (read-only; the live windows are `live_stats_per_min`, `live_infra_per_min`).
    pub query: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Admin endpoint of the running `suiftly run` (default: admin.listen).
    #[arg(long)]
    pub url: Option<String>,
}

/// `suiftly sql`: sends the query to the running process (the live windows are in its memory).
pub async fn sql_command(cfg: Config, args: SqlArgs) -> Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let token = cfg.operator_token(false)?;
    let base = args
        .url
        .unwrap_or_else(|| format!("http://{}", cfg.admin.listen));
    let fmt = match args.format {
        Format::Table => "table",
        Format::Csv => "csv",
        Format::Json => "json",
    };
    let body = serde_json::json!({ "sql": args.query, "format": fmt }).to_string();
    let req = hyper::Request::post(format!("{}/admin/sql", base.trim_end_matches('/')))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(hyper::body::Bytes::from(body)))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("connecting to {base} (is `suiftly run` running?)"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        anyhow::bail!("{status}: {msg}");
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    if !bytes.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Start: RFC 3339 (`2026-11-26T00:00:00Z`), `now`, or relative (`-6h`, `-30m`, `-2d`).
    #[arg(long, default_value = "-7d", allow_hyphen_values = true)]
    pub from: String,
    /// End (exclusive), same forms; clipped to what has settled.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub to: String,
}

/// Parses `now`, `-<n>{s,m,h,d}` or RFC 3339.
pub fn parse_time(s: &str) -> Result<SystemTime> {
    let now = SystemTime::now();
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let (num, unit) = rel.split_at(rel.len().saturating_sub(1));
        let n: u64 = num
            .parse()
            .with_context(|| format!("bad relative time {s:?} (e.g. -6h)"))?;
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86400,
            _ => anyhow::bail!("bad unit in {s:?}: use s, m, h or d"),
        };
        return Ok(now - Duration::from_secs(secs));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("bad time {s:?}: use RFC 3339, now, or -6h"))?;
    Ok(SystemTime::from(t.with_timezone(&chrono::Utc)))
}

fn fmt_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

/// `suiftly audit`: recompute from raw rows and compare; exit status 1 on any difference.
pub async fn audit_command(cfg: Config, args: AuditArgs) -> Result<()> {
    let (from, to) = (parse_time(&args.from)?, parse_time(&args.to)?);
    anyhow::ensure!(from < to, "--from must be before --to");
    // The running process's database (external, or the embedded one it advertises), else an
    // embedded cluster started for the audit.
    let (conninfo, _db) = match &cfg.database_url {
        Some(u) => (u.clone(), None),
        None => match std::fs::read_to_string(cfg.data_dir.join("conninfo")) {
            Ok(c) if suiftly_aggregate::settle::connect(c.trim()).await.is_ok() => {
                (c.trim().to_owned(), None)
            }
            _ => {
                let db = tokio::task::block_in_place(|| crate::database::Database::open(&cfg))?;
                db.migrate().await?;
                (db.conninfo.clone(), Some(db))
            }
        },
    };
    let client = suiftly_aggregate::settle::connect(&conninfo)
        .await
        .context("connecting to postgresql")?;
    let report = suiftly_aggregate::audit::audit(&client, from, to).await?;
    if report.settled_before_us == i64::MIN {
        println!("audit: nothing has been metered in this database yet");
        return Ok(());
    }
    println!(
        "audit: settled before {} (later buckets are still live and not compared)",
        fmt_us(report.settled_before_us)
    );
    for t in &report.tables {
        if t.to_us <= t.from_us {
            println!("{:<15} (no complete bucket in range)", t.table);
            continue;
        }
        println!(
            "{:<15} [{}, {})  compared {:>8}  differences {}",
            t.table,
            fmt_us(t.from_us),
            fmt_us(t.to_us),
            t.compared,
            t.differences
        );
        for e in &t.examples {
            println!("    {e}");
        }
    }
    println!(
        "audit: {} groups compared in {} tables, {} differences",
        report.compared(),
        report.tables.len(),
        report.differences()
    );
    if let Some(mut db) = _db
        && let Some(c) = db.cluster.as_mut()
    {
        tokio::task::block_in_place(|| c.stop())?;
    }
    anyhow::ensure!(
        report.differences() == 0,
        "{} differences between the settled aggregates and the raw rows",
        report.differences()
    );
    Ok(())
}
