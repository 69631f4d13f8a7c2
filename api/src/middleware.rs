//! Per-request layers: metrics (route template, method, status class) and the per-IP limit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

pub async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let class = match resp.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let labels = [
        ("route", route),
        ("method", method),
        ("status", class.to_owned()),
    ];
    metrics::counter!("suiftly_api_requests_total", &labels).increment(1);
    metrics::histogram!("suiftly_api_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// The rate-limit bucket of a client address: IPv4 by address, IPv6 by /64 (a single
/// subscriber usually holds a whole /64, so keying on the full address would give one host
/// 2^64 fresh buckets). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn ip_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Limits by the TCP peer address (IPv6 by /64, see [`ip_bucket`]). Forwarded headers are
/// not trusted here: a proxy in front must do its own per-client limiting.
pub async fn ip_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| ip_bucket(c.0.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !state.ip_limiter.check(&ip, state.clock.now()) {
        metrics::counter!("suiftly_api_rate_limited_total", "scope" => "ip").increment(1);
        return ApiError::RateLimited.into_response();
    }
    next.run(req).await
}

/// Bounds a request's total time; a request still running at the deadline is dropped
/// (its transaction rolls back) and answered 408 with a JSON body.
pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            metrics::counter!("suiftly_api_timeouts_total").increment(1);
            ApiError::Timeout.into_response()
        }
    }
}
