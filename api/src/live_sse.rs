//! `GET /stats/live`: the caller's usage pushed as server-sent events.
//!
//! Events (JSON data; documented in the OpenAPI document):
//! - `provisional` — every unsettled row of the caller (open minutes and late deltas not yet
//!   settled), at most once per second and only when something changed; replaces the
//!   previous provisional view;
//! - `settled` (`id` = settlement sequence) — what one settlement added for the caller (the
//!   numbers billing uses); one per settlement, empty `rows` included, so ids are dense;
//!   drops the provisional view (the next `provisional` follows);
//! - `reset` (`id` = the current sequence) — the missed events cannot be replayed (the
//!   `Last-Event-ID` is older than the replay retention, or unknown): reload the series;
//! - `end` — the server is shutting down or the stream reached its maximum duration:
//!   reconnect (with `Last-Event-ID`; a fresh access token).
//!
//! A reconnect with `Last-Event-ID: n` (header, or `last_event_id` query for clients that
//! cannot set it) replays the `settled` events after `n` from PostgreSQL
//! (`settlement_log`/`settlement_minutes`), then goes live; a stream that lagged behind its
//! channel, or saw a gap in the sequence, fills it the same way. Comment lines
//! (`: keep-alive`) every [`crate::live::LiveOptions::keepalive`].
//!
//! Authentication: `Authorization: Bearer <access token>`, or `?access_token=` for the
//! browser's `EventSource`, which cannot set headers (the access token lives 15 minutes and
//! the stream ends by then, see `max_stream_duration`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use suiftly_model::{MinuteKey, Numbers};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::live::{CustomerEvent, Subscription, settled_event};
use crate::{AppState, QueryParams};

/// Settled events a reconnect may replay at most; further back gets a `reset`.
pub const MAX_REPLAY: u64 = 5_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    pub access_token: Option<String>,
    pub last_event_id: Option<String>,
}

fn to_event(e: &CustomerEvent) -> Event {
    let ev = Event::default().event(e.kind).data(&*e.data);
    match e.seq {
        Some(s) => ev.id(s.to_string()),
        None => ev,
    }
}

/// `settled` events `(after, upto]` of one customer from PostgreSQL, in order; every sequence
/// gets an event (empty `rows` when the customer had nothing in it).
pub async fn replay(
    client: &impl deadpool_postgres::GenericClient,
    customer_id: i32,
    after: u64,
    upto: u64,
) -> Result<Vec<CustomerEvent>, ApiError> {
    let rows = client
        .query(
            &format!(
                "SELECT l.seq, (extract(epoch FROM l.settled_before) / 60)::bigint, \
                    (extract(epoch FROM m.bucket) / 60)::bigint, m.service_type, m.network, {} \
                 FROM settlement_log l \
                 LEFT JOIN settlement_minutes m ON m.seq = l.seq AND m.customer_id = $1 \
                 WHERE l.seq > $2 AND l.seq <= $3 \
                 ORDER BY l.seq",
                suiftly_model::live::NUMBERS_COLUMNS
                    .split(", ")
                    .map(|c| format!("m.{}", c.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[&customer_id, &(after as i64), &(upto as i64)],
        )
        .await?;
    let mut out: Vec<CustomerEvent> = Vec::new();
    /// (seq, settled_before, the customer's rows of that settlement)
    type Pending = (u64, i64, Vec<(MinuteKey, Numbers)>);
    let mut cur: Option<Pending> = None;
    for r in &rows {
        let seq = r.get::<_, i64>(0) as u64;
        if cur.as_ref().is_none_or(|c| c.0 != seq) {
            if let Some((s, sb, rows)) = cur.take() {
                out.push(settled_event(s, sb, rows.into_iter()));
            }
            cur = Some((seq, r.get(1), Vec::new()));
        }
        if let Some(minute) = r.get::<_, Option<i64>>(2) {
            let k = MinuteKey {
                minute,
                customer_id,
                service_type: r.get(3),
                network: r.get(4),
            };
            let n = Numbers {
                requests: r.get(5),
                billable_requests: r.get(6),
                dropped_requests: r.get(7),
                success: r.get(8),
                client_errors: r.get(9),
                server_errors: r.get(10),
                status_2xx: r.get(11),
                status_3xx: r.get(12),
                status_4xx: r.get(13),
                status_5xx: r.get(14),
                total_bytes: r.get(15),
                billable_bytes: r.get(16),
                response_time_sum_ms: r.get(17),
                min_response_time_ms: r.get(18),
                max_response_time_ms: r.get(19),
            };
            if let Some(c) = cur.as_mut() {
                c.2.push((k, n));
            }
        }
    }
    if let Some((s, sb, rows)) = cur.take() {
        out.push(settled_event(s, sb, rows.into_iter()));
    }
    Ok(out)
}

/// (oldest retained, newest) settlement sequence; (0, 0) when none is retained.
async fn retained(client: &impl deadpool_postgres::GenericClient) -> Result<(u64, u64), ApiError> {
    let r = client
        .query_one(
            "SELECT COALESCE(min(seq), 0), COALESCE(max(seq), 0) FROM settlement_log",
            &[],
        )
        .await?;
    let newest = client
        .query_opt(
            "SELECT settlement_seq FROM aggregate_state WHERE id = 1",
            &[],
        )
        .await?
        .map_or(0, |r| r.get::<_, i64>(0));
    Ok((r.get::<_, i64>(0) as u64, newest.max(r.get(1)) as u64))
}

fn reset(reason: &str, seq: u64) -> Event {
    Event::default()
        .event("reset")
        .id(seq.to_string())
        .data(json!({ "reason": reason, "seq": seq }).to_string())
}

fn end(reason: &str) -> Event {
    Event::default()
        .event("end")
        .data(json!({ "reason": reason }).to_string())
}

struct Stream {
    state: AppState,
    sub: Subscription,
    customer_id: i32,
    /// Last settled sequence sent (or replayed); `None`: none yet, take the first as it comes.
    last: Option<u64>,
    queue: VecDeque<Event>,
    stop: CancellationToken,
    deadline: tokio::time::Instant,
    done: bool,
}

impl Stream {
    /// Queues the settled events `(last, upto]` from the database.
    async fn fill(&mut self, upto: u64) -> Result<(), ApiError> {
        let Some(after) = self.last else {
            return Ok(());
        };
        if upto <= after {
            return Ok(());
        }
        let client = self.state.pool.get().await?;
        let (oldest, _) = retained(&client).await?;
        if upto - after > MAX_REPLAY || after + 1 < oldest {
            self.queue.push_back(reset("replay_unavailable", upto));
        } else {
            for e in replay(&client, self.customer_id, after, upto).await? {
                self.queue.push_back(to_event(&e));
            }
            metrics::counter!("suiftly_api_live_replayed_total").increment(upto - after);
        }
        self.last = Some(upto);
        Ok(())
    }

    async fn on_event(&mut self, e: Arc<CustomerEvent>) -> Result<(), ApiError> {
        if let Some(seq) = e.seq {
            match self.last {
                Some(l) if seq <= l => return Ok(()),
                Some(l) if seq > l + 1 => self.fill(seq - 1).await?,
                _ => {}
            }
            self.last = Some(seq);
        }
        self.queue.push_back(to_event(&e));
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Stream)> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            let r = tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    self.done = true;
                    self.queue.push_back(end("shutdown"));
                    continue;
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    self.done = true;
                    self.queue.push_back(end("max_duration"));
                    continue;
                }
                r = self.sub.rx.recv() => r,
            };
            let step = match r {
                Ok(e) => self.on_event(e).await,
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("suiftly_api_live_lagged_total").increment(n);
                    let upto = self
                        .state
                        .live
                        .as_ref()
                        .map_or(0, |l| l.hub.last_settled_seq());
                    self.fill(upto).await
                }
                Err(RecvError::Closed) => {
                    self.done = true;
                    Ok(())
                }
            };
            if let Err(e) = step {
                // The client reconnects with its Last-Event-ID and loses nothing.
                tracing::warn!(customer_id = self.customer_id, error = %e, "live stream ends: cannot read missed events");
                self.done = true;
                self.queue.push_back(end("unavailable"));
            }
        }
    }
}

/// `GET /stats/live` (see the module doc).
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<LiveQuery>,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or(q.access_token)
        .ok_or(ApiError::Unauthorized)?;
    let customer_id = crate::auth::caller_from_token(&state, &token)
        .await?
        .customer_id;
    let live = state
        .live
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("no live source configured".into()))?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id);
    let last_event_id = match last_event_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::InvalidRequest("Last-Event-ID must be an integer".into()))?,
        ),
    };
    let opts = live.hub.options().clone();
    let sub = live
        .hub
        .subscribe(customer_id)
        .map_err(|e| ApiError::StreamLimitReached { limit: e.limit })?;
    let mut s = Stream {
        customer_id,
        last: None,
        queue: VecDeque::new(),
        stop: live.stop.clone(),
        deadline: tokio::time::Instant::now() + opts.max_stream_duration,
        done: false,
        state: state.clone(),
        sub,
    };
    // Subscribed first, then the replay: events committed meanwhile arrive on the channel
    // and are skipped when the replay already had them.
    match last_event_id {
        Some(l) => {
            let client = state.pool.get().await?;
            let (oldest, newest) = retained(&client).await?;
            if l > newest {
                s.queue.push_back(reset("unknown_event_id", newest));
            } else if newest - l > MAX_REPLAY || (l + 1 < oldest && l < newest) {
                s.queue.push_back(reset("replay_unavailable", newest));
            } else {
                for e in replay(&client, customer_id, l, newest).await? {
                    s.queue.push_back(to_event(&e));
                }
            }
            s.last = Some(newest);
        }
        None => {
            if s.sub.last_settled_seq > 0 {
                s.last = Some(s.sub.last_settled_seq);
            }
        }
    }
    let first = to_event(&s.sub.provisional.clone()).retry(std::time::Duration::from_millis(2_000));
    s.queue.push_back(first);
    metrics::counter!("suiftly_api_live_streams_opened_total").increment(1);
    tracing::debug!(customer_id, ?last_event_id, "live stream opened");
    let body = futures_util::stream::unfold(s, Stream::next);
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(opts.keepalive).text("keep-alive"))
        .into_response())
}
