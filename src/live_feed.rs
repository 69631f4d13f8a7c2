//! The live tail between metering and the API (issue 13): who feeds the API's
//! [`LiveHub`], in both places the API runs.
//!
//! - **In the metering process** (`suiftly run`): [`feed_from_aggregator`] takes the
//!   aggregator's settled-window subscription and, whenever its windows changed (a generation
//!   counter polled every [`POLL`]), its [`live_state`](suiftly_aggregate::service::Aggregator::live_state),
//!   and hands both to the hub. The same hub serves the in-process API stage and the internal
//!   feed below.
//! - **In API replicas** (`suiftly api` with `[api.live] source`): [`follow`] reads the
//!   metering process's internal feed, `GET /internal/live` on its admin port (Bearer operator
//!   token), and applies every update to its own hub — the replica's hub then holds what the
//!   metering hub holds. While the feed is down the replica forgets the unsettled rows (the
//!   stats read the settled tables only, streams get no provisional updates) and reconnects
//!   with capped backoff; settled events it missed reach its streams from PostgreSQL (by
//!   sequence), so nothing is lost.
//!
//! The internal feed: `text/event-stream`, one event `update` per [`HubUpdate`] (JSON, the
//! hub's own serde form): first a full state (`"reset": true`), then every change in order;
//! a replica that falls behind the feed's buffer gets a fresh full state. Why HTTP/SSE on the
//! admin port and not the operator SQL port: see docs/ARCHITECTURE.md ("Live tail").

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use suiftly_aggregate::service::Aggregator;
use suiftly_api::live::{HubUpdate, LiveHub, SseDecoder};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the feeder looks at the aggregator's generation counter.
pub const POLL: Duration = Duration::from_millis(100);

/// Feeds `hub` from the aggregator until `stop` (or the aggregator is gone).
pub async fn feed_from_aggregator(agg: Aggregator, hub: Arc<LiveHub>, stop: CancellationToken) {
    let mut settled = agg.subscribe();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = u64::MAX;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = settled.recv() => match r {
                Ok(w) => hub.ingest_settled(&w),
                // Streams fill the gap from PostgreSQL when they see the next sequence.
                Err(RecvError::Lagged(n)) => warn!(missed = n, "live tail lagged behind settlements"),
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                let g = agg.generation();
                if g != seen {
                    seen = g;
                    hub.ingest_state(agg.live_state());
                }
                hub.flush_pending();
            }
        }
    }
}

/// Periodic flush of rate-limited provisional updates for a hub fed from elsewhere (replicas).
pub async fn flush_loop(hub: Arc<LiveHub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => hub.flush_pending(),
        }
    }
}

/// What the admin endpoint's `/internal/live` needs.
#[derive(Clone)]
pub struct InternalFeed {
    pub hub: Arc<LiveHub>,
    pub token: String,
    pub stop: CancellationToken,
}

/// Constant-time comparison: the token must not leak through response timing.
fn token_matches(given: &str, want: &str) -> bool {
    let (a, b) = (given.as_bytes(), want.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn update_event(u: &HubUpdate) -> Event {
    Event::default()
        .event("update")
        .data(serde_json::to_string(u).expect("plain data"))
}

/// `GET /internal/live` (admin port): the hub's updates for API replicas.
pub async fn internal_live(State(feed): State<Arc<InternalFeed>>, headers: HeaderMap) -> Response {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_matches(t.trim(), &feed.token));
    if !ok {
        return (StatusCode::UNAUTHORIZED, "operator token required\n").into_response();
    }
    let (full, rx) = feed.hub.follow();
    metrics::counter!("suiftly_live_feed_followers_total").increment(1);
    info!("an api replica follows the live tail");
    struct S {
        first: Option<HubUpdate>,
        rx: tokio::sync::broadcast::Receiver<Arc<HubUpdate>>,
        hub: Arc<LiveHub>,
        stop: CancellationToken,
    }
    let s = S {
        first: Some(full),
        rx,
        hub: feed.hub.clone(),
        stop: feed.stop.clone(),
    };
    let body = futures_util::stream::unfold(s, |mut s| async move {
        if let Some(f) = s.first.take() {
            return Some((Ok::<_, Infallible>(update_event(&f)), s));
        }
        tokio::select! {
            _ = s.stop.cancelled() => None,
            r = s.rx.recv() => match r {
                Ok(u) => Some((Ok(update_event(&u)), s)),
                Err(RecvError::Lagged(_)) => {
                    // Start over with a full state; the replica's streams fill settled gaps
                    // from PostgreSQL.
                    let (full, rx) = s.hub.follow();
                    s.rx = rx;
                    Some((Ok(update_event(&full)), s))
                }
                Err(RecvError::Closed) => None,
            },
        }
    });
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

/// Replica side: follows `source` (the metering process's admin URL) into `hub` until `stop`.
pub async fn follow(source: String, token: String, hub: Arc<LiveHub>, stop: CancellationToken) {
    let mut backoff =
        suiftly_model::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let mut connected = false;
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = follow_once(&source, &token, &hub, &mut connected) => r,
        };
        hub.disconnect();
        if connected {
            backoff.reset();
        }
        match r {
            Ok(()) => info!(%source, "live feed ended; reconnecting"),
            Err(e) => warn!(%source, error = %format!("{e:#}"), "live feed unavailable; retrying"),
        }
        let d = backoff.next_delay();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(d) => {}
        }
    }
}

async fn follow_once(source: &str, token: &str, hub: &LiveHub, connected: &mut bool) -> Result<()> {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("{}/internal/live", source.trim_end_matches('/'))
        .parse()
        .context("api.live.source")?;
    let req = hyper::Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "text/event-stream")
        .body(http_body_util::Empty::new())?;
    let resp = client.request(req).await.context("connecting")?;
    anyhow::ensure!(
        resp.status().is_success(),
        "the metering process answered {}",
        resp.status()
    );
    info!(%source, "following the live tail");
    *connected = true;
    let mut body = resp.into_body();
    let mut dec = SseDecoder::default();
    // A silent feed (no update, no keep-alive for 3 intervals) is a dead connection.
    let idle = Duration::from_secs(15);
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .context("the live feed went silent")?;
        let Some(frame) = frame else {
            return Ok(());
        };
        let frame = frame.context("reading the live feed")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for ev in dec.push(&data) {
            if ev.event == "update" {
                let u: HubUpdate =
                    serde_json::from_str(&ev.data).context("decoding a live feed update")?;
                hub.apply(u);
            }
        }
    }
}
