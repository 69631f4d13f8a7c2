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
    let token =
        suiftly_api::auth::issue(&state, 42, &[7; 16], "access", state.clock.now()).unwrap();
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

/// Issue 15 item 9: `/metrics` is not served on the customer API port; the binary serves
/// `metrics_router` on its own listener (`api.metrics_listen`, loopback by default).
#[tokio::test]
async fn metrics_are_not_on_the_public_router() {
    let t = test_app().await;
    let r = t.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );
    use tower::ServiceExt;
    let resp = suiftly_api::metrics_router(Arc::new(|| "# metrics\n".to_string()))
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Issue 15 item 9: one IPv6 /64 is one rate-limit bucket (a host owns the whole prefix);
/// another /64 has its own.
#[tokio::test]
async fn ipv6_clients_share_a_bucket_per_64() {
    let mut cfg = test_config();
    cfg.ip_rate = RateLimit {
        per_second: 1,
        burst: 2,
    };
    let t = test_app_with(cfg).await;
    let from = |addr: &str| {
        let mut req = Request::builder()
            .uri("/openapi.json")
            .body(Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = addr.parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    };
    let codes = {
        let mut v = Vec::new();
        for a in [
            "[2001:db8:1:2::1]:1000",
            "[2001:db8:1:2::2]:1000",
            "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1000",
        ] {
            v.push(t.raw(from(a)).await.status);
        }
        v
    };
    assert_eq!(
        codes,
        vec![
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "three addresses of one /64 share one bucket of 2"
    );
    assert_eq!(
        t.raw(from("[2001:db8:1:3::1]:1000")).await.status,
        StatusCode::OK,
        "the next /64 has its own bucket"
    );
    assert_eq!(
        suiftly_api::middleware::ip_bucket("::ffff:192.0.2.7".parse().unwrap()),
        "192.0.2.7".parse::<std::net::IpAddr>().unwrap()
    );
}

/// Spawns `run` on `bind` with `limits`; returns the address and the shutdown sender.
async fn serve_with(
    t: &TestApp,
    limits: suiftly_api::server::ServerLimits,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), suiftly_api::RunError>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state_cfg = t.state.config.clone();
    state_cfg.server = limits;
    let state = suiftly_api::AppState::new(
        state_cfg,
        t.state.pool.clone(),
        t.escrow.clone(),
        t.clock.clone(),
        None,
    )
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(suiftly_api::run(listener, state, async {
        let _ = rx.await;
    }));
    (addr, tx, server)
}

/// Reads until the server closes the connection (or `limit` passes): true when it closed.
async fn closed_by_server(s: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        match tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

/// Issue 15 item 5, through real sockets: a connection that sends nothing is closed after the
/// idle timeout; a slowloris client that keeps sending one header byte at a time is closed
/// after the header-read timeout; neither holds the server.
#[tokio::test]
async fn idle_and_slowloris_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let t = test_app().await;
    let limits = suiftly_api::server::ServerLimits {
        header_read_timeout: std::time::Duration::from_millis(1500),
        idle_timeout: std::time::Duration::from_millis(700),
        max_connections: 64,
    };
    let (addr, tx, server) = serve_with(&t, limits).await;
    // Idle: connects and sends nothing.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut idle, std::time::Duration::from_secs(30)).await,
        "an idle connection must be closed"
    );
    // Slowloris: a header byte every 200 ms, never finishing the head (always active, so
    // only the header-read timeout can end it).
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut closed = false;
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if slow.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 256];
        match tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("no response is due to an unfinished request head"),
            Err(_) => {}
        }
    }
    assert!(closed, "a slowloris connection must be closed");
    // A normal keep-alive client is served, twice on one connection.
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        ok.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut ok).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Issue 15 item 5, found by the load benchmark: with an idle timeout longer than the header
/// timeout, the watchdog slept until the idle deadline and missed a request head that started
/// meanwhile, so a slowloris client lived until hyper's own 30 s default cut it. The head must
/// be cut at the header timeout (1.5 s here; the bound below is 20 s, under hyper's 30 s and
/// the 120 s idle timeout, so a loaded machine cannot fail it).
#[tokio::test]
async fn slowloris_is_cut_at_the_header_timeout_when_idle_timeout_is_longer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = test_app().await;
    let limits = suiftly_api::server::ServerLimits {
        header_read_timeout: std::time::Duration::from_millis(1500),
        idle_timeout: std::time::Duration::from_secs(120),
        max_connections: 64,
    };
    let (addr, tx, server) = serve_with(&t, limits).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The watchdog has gone to sleep until the idle deadline before the head starts.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut closed = false;
    while t0.elapsed() < std::time::Duration::from_secs(20) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if slow.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 256];
        match tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("no response is due to an unfinished request head"),
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "a slowloris connection must be closed at the header timeout, not the idle timeout"
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Reads one response head and skips its body (Content-Length).
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut b))
            .await
            .expect("a response within 30 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed mid-head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(b[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head
}

/// Issue 15 item 5, through real sockets: at the connection cap a new client waits (it is
/// not answered while the cap is held) and is served as soon as a slot frees.
#[tokio::test]
async fn the_connection_cap_holds_new_clients_until_a_slot_frees() {
    use tokio::io::AsyncWriteExt;
    let t = test_app().await;
    let limits = suiftly_api::server::ServerLimits {
        header_read_timeout: std::time::Duration::from_secs(60),
        idle_timeout: std::time::Duration::from_secs(60),
        max_connections: 2,
    };
    let (addr, tx, server) = serve_with(&t, limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Served: the connection is accepted and occupies a slot.
        c.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_head(&mut c).await.starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 16];
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), third.read(&mut b))
            .await
            .is_err(),
        "no answer while both slots are held"
    );
    drop(held.pop());
    assert!(read_head(&mut third).await.starts_with("HTTP/1.1 200"));
    drop(held);
    drop(third);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Issue 15 item 6, through real sockets: MOCK_AUTH on a non-loopback address is refused in
/// any mode; on loopback it serves.
#[tokio::test]
async fn mock_auth_is_refused_on_a_non_loopback_address() {
    let mut cfg = test_config();
    cfg.mock_auth = true;
    assert!(!cfg.production);
    let t = test_app_with(cfg).await;
    let public = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let r = suiftly_api::run(public, t.state.clone(), async {}).await;
    match r {
        Err(suiftly_api::RunError::Config(suiftly_api::ConfigError::MockAuthOnPublicAddress(
            a,
        ))) => {
            assert!(a.ip().is_unspecified())
        }
        other => panic!("MOCK_AUTH on 0.0.0.0 must be refused: {other:?}"),
    }
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = local.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(suiftly_api::run(local, t.state.clone(), async {
        let _ = rx.await;
    }));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
    drop(s);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
