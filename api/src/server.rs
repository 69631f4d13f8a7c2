//! The HTTP/1.1 server loop: connection cap, header-read timeout, idle timeout, graceful
//! shutdown.
//!
//! `axum::serve` has none of the first three, and the request timeout of
//! [`middleware::timeout`](crate::middleware::timeout) only starts once a request's head has
//! been read, so a client that opens connections and sends nothing (or one header byte every
//! few seconds — slowloris) held a task and a file descriptor forever. Here every connection is
//! watched:
//! - **header read timeout:** from the first byte of a request until its head is complete
//!   (the handler starts) at most [`ServerLimits::header_read_timeout`];
//! - **idle timeout:** a connection with no request in flight and no byte received or sent for
//!   [`ServerLimits::idle_timeout`] is closed — before its first request, and between
//!   keep-alive requests;
//! - **connection cap:** at most [`ServerLimits::max_connections`] are open; beyond that the
//!   loop stops accepting (the kernel's backlog holds the rest) until one closes, so a flood
//!   cannot exhaust the process's file descriptors.
//!
//! Closing a connection that is waiting for a request head drops it: nothing was started.
//! A request in flight is bounded by the request timeout instead.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Per-connection bounds (`[api]` `header_read_timeout_ms`, `idle_timeout_ms`,
/// `max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: 1024,
        }
    }
}

/// What the watchdog knows about one connection.
#[derive(Debug)]
struct ConnState {
    /// Last byte received or sent.
    last_activity: Instant,
    /// First byte of a request whose head is not complete yet.
    head_started: Option<Instant>,
    /// Requests being handled.
    in_flight: usize,
}

type Shared = Arc<Mutex<ConnState>>;

/// The socket, reporting activity to the watchdog.
struct Watched {
    io: TcpStream,
    state: Shared,
    /// Wakes the watchdog when a request head starts: it sleeps until the deadline it knew,
    /// and an idle timeout longer than the header timeout must not postpone the latter.
    head_started: Arc<Notify>,
}

impl Watched {
    fn saw_bytes(&self, read: bool) {
        let mut s = self.state.lock().expect("conn state");
        let now = Instant::now();
        s.last_activity = now;
        if read && s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
            self.head_started.notify_one();
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.saw_bytes(true);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.saw_bytes(false);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Marks a request in flight for as long as it lives.
struct InFlight(Shared);

impl InFlight {
    fn start(state: &Shared) -> InFlight {
        let mut s = state.lock().expect("conn state");
        s.in_flight += 1;
        s.head_started = None;
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock().expect("conn state");
        s.in_flight -= 1;
        s.last_activity = Instant::now();
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep(Instant),
    HeaderTimeout,
    Idle,
}

fn judge(s: &ConnState, limits: &ServerLimits, now: Instant) -> Verdict {
    if s.in_flight > 0 {
        // Bounded by the request timeout; look again after an idle period.
        return Verdict::Keep(now + limits.idle_timeout);
    }
    if let Some(t) = s.head_started
        && now >= t + limits.header_read_timeout
    {
        return Verdict::HeaderTimeout;
    }
    let idle_at = s.last_activity + limits.idle_timeout;
    if now >= idle_at {
        return Verdict::Idle;
    }
    match s.head_started {
        Some(t) => Verdict::Keep(idle_at.min(t + limits.header_read_timeout)),
        None => Verdict::Keep(idle_at),
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown`, then lets in-flight requests
/// finish and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot first: at the cap, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        if permits.available_permits() == 0 {
            metrics::counter!("suiftly_api_connection_cap_reached_total").increment(1);
        }
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            metrics::gauge!("suiftly_api_open_connections").increment(1.0);
            serve_connection(stream, peer, app, limits, &mut stop).await;
            metrics::gauge!("suiftly_api_open_connections").decrement(1.0);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    stop: &mut watch::Receiver<bool>,
) {
    let state: Shared = Arc::new(Mutex::new(ConnState {
        last_activity: Instant::now(),
        head_started: None,
        in_flight: 0,
    }));
    let head_started = Arc::new(Notify::new());
    let io = TokioIo::new(Watched {
        io: stream,
        state: state.clone(),
        head_started: head_started.clone(),
    });
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::start(&svc_state);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(axum::body::Body::new)).await;
            // In flight until the response body is done, not only its head: a streamed body
            // (the live tail's server-sent events) may be silent for longer than the idle
            // timeout between its keep-alives and must not be cut as idle.
            resp.map(|r| {
                r.map(move |body| {
                    use http_body_util::BodyExt;
                    axum::body::Body::new(body.map_frame(move |f| {
                        let _in_flight = &guard;
                        f
                    }))
                })
            })
            .map_err(|e: Infallible| match e {})
        }
    });
    // hyper's own header timeout (30 s by default once a timer is set) is off: it also runs
    // while a keep-alive connection waits, so it would cut `idle_timeout` to 30 s. The
    // watchdog below enforces both limits as configured.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let verdict = judge(&state.lock().expect("conn state"), &limits, Instant::now());
        let wake = match verdict {
            Verdict::Keep(at) => at,
            Verdict::HeaderTimeout | Verdict::Idle => {
                let reason = if verdict == Verdict::Idle {
                    "idle"
                } else {
                    "header_timeout"
                };
                metrics::counter!("suiftly_api_connections_closed_total", "reason" => reason)
                    .increment(1);
                debug!(%peer, reason, "closing connection");
                return;
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {}
            // A request head started: judge again (its header deadline may come first).
            _ = head_started.notified() => {}
            changed = stop.changed(), if !draining => {
                if changed.is_err() || *stop.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(idle_for: u64, head_for: Option<u64>, in_flight: usize, now: Instant) -> ConnState {
        ConnState {
            last_activity: now - Duration::from_secs(idle_for),
            head_started: head_for.map(|h| now - Duration::from_secs(h)),
            in_flight,
        }
    }

    /// A response body that streams slower than the idle timeout is not cut: the request
    /// stays in flight until its body ends (the live tail's streams depend on it).
    #[tokio::test]
    async fn a_slow_streamed_body_is_not_idle() {
        use axum::routing::get;
        let app = Router::new().route(
            "/s",
            get(|| async {
                let chunks = futures_util::stream::unfold(0u8, |i| async move {
                    if i == 3 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((
                        Ok::<_, Infallible>(axum::body::Bytes::from(vec![b'a' + i])),
                        i + 1,
                    ))
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(100),
            max_connections: 4,
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            async move { s.cancelled().await },
        ));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /s HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with("abc"), "{text}");
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn the_watchdog_rules() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: 1,
        };
        let now = Instant::now() + Duration::from_secs(100);
        // Idle: no bytes for 5 s and nothing in flight.
        assert_eq!(judge(&st(5, None, 0, now), &limits, now), Verdict::Idle);
        assert_eq!(
            judge(&st(2, None, 0, now), &limits, now),
            Verdict::Keep(now + Duration::from_secs(3))
        );
        // Slowloris: a byte every second keeps it active, but the head must be complete
        // within 10 s of its first byte.
        assert_eq!(
            judge(&st(1, Some(10), 0, now), &limits, now),
            Verdict::HeaderTimeout
        );
        assert_eq!(
            judge(&st(1, Some(4), 0, now), &limits, now),
            Verdict::Keep(now + Duration::from_secs(4))
        );
        // A stalled partial head is also idle.
        assert_eq!(judge(&st(6, Some(6), 0, now), &limits, now), Verdict::Idle);
        // In flight: the request timeout bounds it, not the watchdog.
        assert!(matches!(
            judge(&st(60, None, 1, now), &limits, now),
            Verdict::Keep(_)
        ));
    }
}
