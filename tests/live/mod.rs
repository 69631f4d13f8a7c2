//! Helpers of the stats and live-tail tests (issue 13): access tokens, a raw `text/event-stream`
//! client over HTTP/1.0 (the body is the stream, delimited by the connection's end), a tiny
//! HTTP/1.0 JSON client, and `sf1` lines.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use suiftly_api::live::{SseDecoder, SseEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The JWT secret every API process of these tests is started with.
pub const JWT_SECRET: &str = "stats-and-live-tail-tests-jwt-secret-0123456789";

/// An access token for `customer_id`, signed with `secret`, with what the API checks behind
/// it in `conninfo`'s database: the customer (active) and a live session (token family).
pub async fn session(secret: &str, conninfo: &str, customer_id: i32) -> String {
    let (c, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let family: Vec<u8> = (0..16u8)
        .map(|i| (customer_id as u8) ^ i.wrapping_mul(37))
        .collect();
    let hash: Vec<u8> = family.iter().map(|b| b ^ 0x5a).collect();
    c.execute(
        "INSERT INTO customers (customer_id, wallet_address) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&customer_id, &format!("0x{customer_id:064x}")],
    )
    .await
    .unwrap();
    let now = chrono::Utc::now();
    c.execute(
        "INSERT INTO refresh_tokens (token_hash, customer_id, created_at, expires_at, family_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &[hash.as_slice(), &customer_id.to_be_bytes()].concat(),
            &customer_id,
            &now,
            &(now + chrono::TimeDelta::days(1)),
            &family,
        ],
    )
    .await
    .unwrap();
    let mut cfg = suiftly_api::ApiConfig::development();
    cfg.jwt_secret = secret.as_bytes().to_vec();
    let pool = suiftly_api::db::pool("host=/nonexistent dbname=none", 1).unwrap();
    let state = suiftly_api::AppState::new(
        cfg,
        pool,
        Arc::new(suiftly_billing::MockEscrow::new()),
        Arc::new(suiftly_api::clock::SystemClock),
        None,
    )
    .unwrap();
    suiftly_api::auth::issue(&state, customer_id, &family, "access", now).unwrap()
}

/// `GET path` with a bearer token: (status, JSON body).
pub async fn get_json(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .expect("response within 60 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        code,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

/// An open `/stats/live` stream.
pub struct Sse {
    s: TcpStream,
    dec: SseDecoder,
    pending: std::collections::VecDeque<SseEvent>,
    pub eof: bool,
}

/// Opens `/stats/live`; `Err((status, body))` when the server refused.
pub async fn open(
    addr: std::net::SocketAddr,
    token: &str,
    last_event_id: Option<u64>,
) -> Result<Sse, (u16, String)> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let last = last_event_id
        .map(|l| format!("Last-Event-ID: {l}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "GET /stats/live HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n{last}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Headers.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut b))
            .await
            .expect("headers within 60 s")
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if code != 200 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        return Err((code, String::from_utf8_lossy(&rest).into_owned()));
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    Ok(Sse {
        s,
        dec: SseDecoder::default(),
        pending: Default::default(),
        eof: false,
    })
}

impl Sse {
    /// The next event, or `None` at the end of the stream or after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.eof {
                return None;
            }
            let mut buf = [0u8; 16384];
            let n = match tokio::time::timeout_at(deadline, self.s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(r) => r.unwrap_or(0),
            };
            if n == 0 {
                self.eof = true;
                continue;
            }
            self.pending.extend(self.dec.push(&buf[..n]));
        }
    }

    /// Events until `pred` matches one (returned last), within `wait`; panics otherwise.
    pub async fn until(
        &mut self,
        wait: Duration,
        what: &str,
        mut pred: impl FnMut(&SseEvent) -> bool,
    ) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => {
                    let hit = pred(&e);
                    seen.push(e);
                    if hit {
                        return seen;
                    }
                }
                None => panic!(
                    "{what}: not seen within {wait:?} (eof: {}); events: {seen:#?}",
                    self.eof
                ),
            }
        }
    }

    /// Keep-alive comment lines seen so far.
    pub fn comments(&self) -> u64 {
        self.dec.comments
    }
}

/// The data of an event as JSON.
pub fn data(e: &SseEvent) -> Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{err}: {}", e.data))
}

/// Sum of `field` over an event's rows.
pub fn rows_sum(e: &SseEvent, field: &str) -> i64 {
    data(e)["rows"]
        .as_array()
        .map(|r| r.iter().map(|x| x[field].as_i64().unwrap()).sum())
        .unwrap_or(0)
}

/// An `sf1` line (see docs/haproxy/FORMAT.md).
#[allow(clippy::too_many_arguments)]
pub fn sf1(
    ts_ms: i64,
    customer: i32,
    service: i16,
    network: i16,
    tt: i16,
    status: i16,
    bytes: i64,
    ta: i32,
) -> String {
    format!(
        "sf1 {}.{:03} fe {network} 17 {service} 2 {customer} - 5 - {tt} 0 10.1.2.3 {status} {bytes} 0 0 1 2 {ta} 1 -- /v1",
        ts_ms.div_euclid(1000),
        ts_ms.rem_euclid(1000)
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
