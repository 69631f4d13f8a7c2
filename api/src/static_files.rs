//! The dashboard's build output (`webapp/dist`), served on the API's own origin so the browser
//! needs no CORS and the refresh cookie (`Path=/auth`, `SameSite=Strict`) just works.
//!
//! The single-page app lives under [`MOUNT`] (`/app/`), never at the root: the API already owns
//! `/services`, `/keys`, `/billing/…`, and a browser reload of a dashboard page must not land
//! on a JSON route (nor a future API route collide with a page). Layout of the responses:
//!
//! - `/app/assets/*`: Vite's content-hashed files, `Cache-Control: public, max-age=31536000,
//!   immutable`; a missing asset is a plain 404 (never `index.html`: a stale chunk name must
//!   fail as a failed import, not parse HTML as JavaScript);
//! - any other `/app/*` path: the file if it exists, else `index.html` (the client-side router
//!   resolves the page), both `Cache-Control: no-cache` so a deploy is picked up at once;
//! - `/` and `/app`: a redirect to `/app/`.
//!
//! Every dashboard response carries a Content-Security-Policy that allows only same-origin
//! scripts, styles and requests (the build has no inline script or style; wallet icons are
//! `data:` URIs, so `img-src` allows `data:`), plus `nosniff`, no framing and no referrer.
//! These routes sit outside the API's rate-limit and metrics layers: they are static files
//! that cost no database work, and a page load fetches a dozen of them at once.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Redirect;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Where the dashboard is mounted (Vite's `base` must match: `webapp/vite.config.ts`).
pub const MOUNT: &str = "/app";

/// The Content-Security-Policy of every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Why a dashboard directory cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "dashboard directory {0} has no index.html (build it: cd webapp && npm ci && npm run build)"
    )]
    NotBuilt(PathBuf),
}

/// Checks that `dir` holds a build (an `index.html`).
pub fn check(dir: &Path) -> Result<(), DashboardError> {
    if dir.join("index.html").is_file() {
        Ok(())
    } else {
        Err(DashboardError::NotBuilt(dir.to_path_buf()))
    }
}

fn set(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

/// The routes that serve the dashboard from `dir` (a Vite build: `index.html` + `assets/`).
/// Merge it into the API router; it has no fallback of its own.
pub fn router<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    let assets = ServeDir::new(dir.join("assets"));
    let pages = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(dir.join("index.html")));
    let root = format!("{MOUNT}/");
    Router::new()
        .nest_service(
            &format!("{MOUNT}/assets"),
            Router::new()
                .fallback_service(assets)
                .layer(set(header::CACHE_CONTROL, IMMUTABLE)),
        )
        .nest_service(
            MOUNT,
            Router::new()
                .fallback_service(pages)
                .layer(set(header::CACHE_CONTROL, REVALIDATE)),
        )
        .route(
            "/",
            get({
                let root = root.clone();
                move || async move { Redirect::to(&root) }
            }),
        )
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
}
