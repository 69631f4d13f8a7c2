//! The manager's admin endpoint (axum router, mounted by the binary behind its own listener):
//!
//! - `GET  /manager/health` — 200 with leader and epoch (503 when the database is unreachable)
//! - `GET  /manager/status` — leader, epoch, lease, the clock, per-task last run / duration /
//!   error / report
//! - `POST /manager/trigger` — run a cycle now (`{"customer_ids": [..]}` to bill only those)
//! - `POST /manager/clock/set` `{"now": "2027-01-01T00:00:00Z"}`,
//!   `POST /manager/clock/advance` `{"seconds": 3600}` — the mock clock; 403 in production.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::clock::ClockError;
use crate::service::{ManagerHandle, Scope};

pub fn router(handle: ManagerHandle) -> Router {
    Router::new()
        .route("/manager/health", get(health))
        .route("/manager/status", get(status))
        .route("/manager/trigger", post(trigger))
        .route("/manager/clock/set", post(clock_set))
        .route("/manager/clock/advance", post(clock_advance))
        .with_state(handle)
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.to_string() } })),
    )
        .into_response()
}

async fn health(State(h): State<ManagerHandle>) -> Response {
    let db = match h.pool().get().await {
        Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let st = h.status();
    let body = json!({
        "status": if db { "ok" } else { "degraded" },
        "database": if db { "ok" } else { "unreachable" },
        "leader": st.leader,
        "epoch": st.epoch,
    });
    let code = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn status(State(h): State<ManagerHandle>) -> Response {
    let st = h.status();
    Json(json!({
        "holder": st.holder,
        "leader": st.leader,
        "epoch": st.epoch,
        "lease": { "epoch": st.lease_epoch, "holder": st.lease_holder, "last_error": st.last_lease_error },
        "clock": { "now": h.clock().now(), "offset_ms": h.clock().offset().num_milliseconds(), "production": h.production() },
        "cycles": st.cycles,
        "last_cycle_started": st.last_cycle_started,
        "last_cycle_reason": st.last_cycle_reason,
        "tasks": st.tasks,
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    customer_ids: Option<Vec<i32>>,
}

async fn trigger(State(h): State<ManagerHandle>, body: axum::body::Bytes) -> Response {
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e),
        }
    };
    let scope = match body.customer_ids {
        Some(ids) => Scope::Customers(ids.into_iter().collect()),
        None => Scope::All,
    };
    let queued = h.trigger(scope, "admin");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "queued": queued, "leader": h.status().leader })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockSet {
    now: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockAdvance {
    seconds: i64,
}

fn clock_error(e: ClockError) -> Response {
    match e {
        ClockError::Production => error(StatusCode::FORBIDDEN, "production", e),
        ClockError::Postgres(e) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}

async fn clock_set(State(h): State<ManagerHandle>, Json(b): Json<ClockSet>) -> Response {
    if h.production() {
        return clock_error(ClockError::Production);
    }
    let client = match h.pool().get().await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    };
    match h.clock().set(&**client, b.now).await {
        Ok(now) => {
            h.trigger(Scope::All, "clock set");
            Json(json!({ "now": now })).into_response()
        }
        Err(e) => clock_error(e),
    }
}

async fn clock_advance(State(h): State<ManagerHandle>, Json(b): Json<ClockAdvance>) -> Response {
    if h.production() {
        return clock_error(ClockError::Production);
    }
    let Some(by) = TimeDelta::try_seconds(b.seconds) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "seconds out of range",
        );
    };
    let client = match h.pool().get().await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    };
    match h.clock().advance(&**client, by).await {
        Ok(now) => {
            h.trigger(Scope::All, "clock advanced");
            Json(json!({ "now": now })).into_response()
        }
        Err(e) => clock_error(e),
    }
}
