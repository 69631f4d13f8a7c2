//! Cross-cutting behaviour: health, metrics, JSON errors, body limits, CORS, rate limits, and
//! the real-socket server with graceful shutdown.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::TimeDelta;
use common::*;
use serde_json::json;
use suiftly_api::ratelimit::RateLimit;

#[tokio::test]
async fn health_metrics_openapi() {
    let t = test_app().await;
    let r = t.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({ "status": "ok", "database": "ok" }));
    let r = t.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!("# metrics\n"));
    let r = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.body["openapi"], "3.0.3");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let t = test_app().await;
    let r = t.call(Method::GET, "/nope", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );
    let r = t.call(Method::DELETE, "/services", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "invalid_request");
}

#[tokio::test]
async fn oversized_and_malformed_bodies() {
    let t = test_app().await;
    let big = format!("{{\"walletAddress\":\"{}\"}}", "a".repeat(20_000));
    let req = Request::builder()
        .method(Method::POST)
        .uri("/auth/connect")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    let r = t.raw(req).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri("/auth/connect")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let r = t.raw(req).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Missing content type.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/auth/connect")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(t.raw(req).await.code(), "invalid_request");
}

#[tokio::test]
async fn cors_allows_only_the_dashboard_origin() {
    let t = test_app().await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/services")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let ok = t.raw(preflight("http://localhost:5173")).await;
    assert_eq!(
        ok.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "http://localhost:5173"
    );
    assert_eq!(
        ok.headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .unwrap(),
        "true"
    );
    let evil = t.raw(preflight("https://evil.example")).await;
    assert!(
        evil.headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn per_ip_rate_limit() {
    let mut cfg = test_config();
    cfg.ip_rate = RateLimit {
        per_second: 1,
        burst: 3,
    };
    let t = test_app_with(cfg).await;
    for _ in 0..3 {
        assert_eq!(
            t.call(Method::GET, "/health", None, None).await.status,
            StatusCode::OK
        );
    }
    let r = t.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    t.clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        t.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn per_customer_rate_limit() {
    let mut cfg = test_config();
    cfg.customer_rate = RateLimit {
        per_second: 1,
        burst: 2,
    };
    let t = test_app_with(cfg).await;
    let a = t.login(1).await;
    let b = t.login(2).await;
    assert_eq!(t.get("/services", &a.token).await.status, StatusCode::OK);
    assert_eq!(t.get("/services", &a.token).await.status, StatusCode::OK);
    assert_eq!(t.get("/services", &a.token).await.code(), "rate_limited");
    // Another customer has their own bucket.
    assert_eq!(t.get("/services", &b.token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn serves_a_real_socket_and_shuts_down() {
    let t = test_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(suiftly_api::run(listener, t.state.clone(), async {
        let _ = rx.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"database\":\"ok\""));
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn health_reports_an_unreachable_database() {
    let conninfo = fresh_database().await;
    // A pool pointing at a database that does not exist: health must say 503, not panic.
    let bad = format!("{conninfo} dbname=does_not_exist");
    let pool = suiftly_api::db::pool(&bad, 1).unwrap();
    let state = suiftly_api::AppState::new(
        test_config(),
        pool,
        Arc::new(suiftly_billing::MockEscrow::new()),
        Arc::new(suiftly_api::clock::SystemClock),
        None,
    )
    .unwrap();
    use tower::ServiceExt;
    let resp = suiftly_api::app(state.clone())
        .oneshot(
            Request::builder()
                .uri("/health")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Handlers answer 503 `unavailable` (cause logged, not sent).
    let token = suiftly_api::auth::issue(&state, 42, "access", state.clock.now()).unwrap();
    let resp = suiftly_api::app(state)
        .oneshot(
            Request::builder()
                .uri("/services")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    use http_body_util::BodyExt;
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        !body.to_string().contains("does_not_exist"),
        "internal cause not leaked"
    );
}

#[tokio::test]
async fn slow_requests_time_out_with_a_json_error() {
    // A zero budget: the handler's first database round trip cannot finish within the first
    // poll, so the deadline (already passed) wins deterministically.
    let mut cfg = test_config();
    cfg.request_timeout = std::time::Duration::ZERO;
    let t = test_app_with(cfg).await;
    let r = t.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::REQUEST_TIMEOUT, "request_timeout")
    );
    // Requests that need no I/O still answer.
    let r = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}
