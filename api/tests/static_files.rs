//! The dashboard build served on the API origin: hashed assets cached for a year, pages and
//! the SPA fallback revalidated, a missing asset is a 404 (not index.html), the API routes win
//! over the dashboard, and every dashboard response carries the Content-Security-Policy.

mod common;

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use suiftly_api::static_files::{CONTENT_SECURITY_POLICY, check};
use tower::ServiceExt;

/// A fake Vite build in a fresh temporary directory.
fn build_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "suiftly-static-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><script type=module src=/app/assets/index-AbC123.js></script>",
    )
    .unwrap();
    std::fs::write(dir.join("assets/index-AbC123.js"), "console.log(1)").unwrap();
    std::fs::write(dir.join("favicon.svg"), "<svg/>").unwrap();
    dir
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(router: &axum::Router, path: &str) -> Resp {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))))
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn header(r: &Resp, name: header::HeaderName) -> &str {
    r.headers
        .get(&name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn serves_the_build_with_cache_headers_csp_and_spa_fallback() {
    let dir = build_dir();
    let mut cfg = test_config();
    cfg.dashboard_dir = Some(dir.clone());
    let t = test_app_with(cfg).await;

    // Hashed asset: long cache, right type, CSP.
    let r = get(&t.router, "/app/assets/index-AbC123.js").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "console.log(1)");
    assert_eq!(
        header(&r, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert!(header(&r, header::CONTENT_TYPE).contains("javascript"));
    assert_eq!(
        header(&r, header::CONTENT_SECURITY_POLICY),
        CONTENT_SECURITY_POLICY
    );
    assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");

    // A missing asset is a 404, never index.html.
    let r = get(&t.router, "/app/assets/index-gone.js").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.contains("<!doctype html>"));

    // The app root and any client-side route: index.html, revalidated, with the CSP.
    for path in [
        "/app",
        "/app/",
        "/app/services/seal",
        "/app/keys",
        "/app/billing",
    ] {
        let r = get(&t.router, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.body.starts_with("<!doctype html>"), "{path}: {}", r.body);
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache", "{path}");
        assert!(header(&r, header::CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(
            header(&r, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&r, header::X_FRAME_OPTIONS), "DENY");
    }

    // Other files at the top of the build are served as themselves.
    let r = get(&t.router, "/app/favicon.svg").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "<svg/>");

    // The root redirects to the app.
    let r = get(&t.router, "/").await;
    assert!(r.status.is_redirection(), "{:?}", r.status);
    assert_eq!(header(&r, header::LOCATION), "/app/");

    // The API keeps its routes and its JSON 404 (no HTML fallback outside /app).
    let r = get(&t.router, "/services").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("\"unauthorized\""));
    assert_eq!(header(&r, header::CONTENT_SECURITY_POLICY), "");
    let r = get(&t.router, "/no/such/route").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("route_not_found"));
    let r = get(&t.router, "/health").await;
    assert_eq!(r.status, StatusCode::OK);

    // Path traversal stays inside the build directory.
    let r = get(&t.router, "/app/assets/../../Cargo.toml").await;
    assert!(!r.body.contains("[package]"));

    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn without_a_dashboard_the_root_is_the_api_404() {
    let t = test_app().await;
    let r = get(&t.router, "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("route_not_found"));
    let r = get(&t.router, "/app/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[test]
fn check_refuses_a_directory_without_index_html() {
    let dir = build_dir();
    assert!(check(&dir).is_ok());
    std::fs::remove_file(dir.join("index.html")).unwrap();
    let e = check(&dir).unwrap_err().to_string();
    assert!(e.contains("npm run build"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
