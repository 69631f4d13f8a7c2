//! Listeners: one socket each (UDP, unix datagram or TCP), feeding a [`MessageSink`].
//!
//! Layout:
//! - [`config`]: one `[[listener]]` table — a [`Transport`] with only its own settings, and
//!   the parse settings.
//! - [`bind`](mod@bind): binding, before anything runs ([`BoundListener`]).
//! - [`inherit`]: adopting a socket the service manager bound (systemd socket activation).
//! - `datagram`: the UDP / unix receive loop (`recvmmsg` into one buffer, drain at stop).
//! - `tcp`: the accept loop and one tracked task per connection (RFC 6587 framing).
//! - [`Admission`]: the allowlist and the receive counters, once for every transport.
//!
//! What a sink does with a message — decode and batch now ([`crate::sink::BatchSink`]), or
//! append it to the disk spool (`crate::spooled::SpoolSink`) — is not the loop's business.

pub mod bind;
pub mod config;
mod datagram;
pub mod inherit;
mod tcp;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use metrics::{Counter, counter};
use suiftly_parser::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::bind::{BoundListener, bind};
pub use self::config::{
    FrontendConfig, ListenerConfig, ListenerError, ParseSettings, TcpConfig, Transport, UdpConfig,
    UnixConfig,
};
use crate::batch::WriteBatch;
use crate::recv::Source;
pub use crate::sink::MessageSink;
use crate::sink::{BatchSink, SinkError};

/// Batch bounds shared by every listener.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_rows: usize,
    pub max_age: Duration,
    /// Rows older than this (relative to receive time) are rejected `timestamp_out_of_range`.
    pub max_past: Duration,
    /// Rows further ahead than this are rejected `timestamp_out_of_range`.
    pub max_future: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_rows: 5_000,
            max_age: Duration::from_millis(200),
            max_past: Duration::from_secs(7 * 24 * 3600),
            max_future: Duration::from_secs(3600),
        }
    }
}

/// What a listener did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Messages received (datagrams, or TCP messages), admitted or not.
    pub datagrams: u64,
    pub bytes: u64,
    /// Dropped because the sender is outside the allowlist, or has no IPv4/IPv6 address.
    pub denied: u64,
    /// Of `denied`: an inet socket reported a sender of another address family (or none).
    pub unknown_family: u64,
    /// Appended to the disk spool (spool on; parsed later by the consumer).
    pub accepted: u64,
    /// Decoded into rows / kept as rejected lines (by the listener with the spool off; by the
    /// consumer with it on — the composition root adds those in at stop).
    pub parsed: u64,
    pub rejected: u64,
    /// Batches handed to the writer (spool off) or appends committed to the spool (spool on).
    pub batches: u64,
}

/// The allowlist and the per-listener receive counters.
///
/// Fail closed: a message is admitted only from a unix peer (unix listeners, whose file mode is
/// the allowlist) or from an IPv4/IPv6 sender inside the allowlist. A sender an inet socket
/// reports in any other address family ([`Source::Unknown`]) has nothing the allowlist could
/// check and is denied, counted under `reason="unknown_family"` (issue 15 item 12: it used to
/// pass as a unix peer, skipping the allowlist).
pub struct Admission {
    name: Arc<str>,
    allow: Vec<IpNet>,
    datagrams: Counter,
    bytes: Counter,
    /// `suiftly_ingest_datagrams_denied_total{reason="not_allowed"}`.
    denied: Counter,
    /// `suiftly_ingest_datagrams_denied_total{reason="unknown_family"}`.
    unknown_family: Counter,
    stats: ListenerStats,
    /// `stats.datagrams` / `stats.bytes` already added to the counters: they are bumped once
    /// per receive call ([`Self::publish`]), not per datagram.
    published: (u64, u64),
}

impl Admission {
    /// `allow` empty: every sender (unix sockets, whose file mode is the allowlist).
    pub fn new(name: Arc<str>, allow: Vec<IpNet>) -> Self {
        let label = name.to_string();
        Self {
            datagrams: counter!("suiftly_ingest_datagrams_total", "listener" => label.clone()),
            bytes: counter!("suiftly_ingest_bytes_total", "listener" => label.clone()),
            denied: counter!("suiftly_ingest_datagrams_denied_total",
                "listener" => label.clone(), "reason" => "not_allowed"),
            unknown_family: counter!("suiftly_ingest_datagrams_denied_total",
                "listener" => label, "reason" => "unknown_family"),
            name,
            allow,
            stats: ListenerStats::default(),
            published: (0, 0),
        }
    }

    /// Adds what was received since the last call to the datagram and byte counters.
    pub fn publish(&mut self) {
        self.datagrams
            .increment(self.stats.datagrams - self.published.0);
        self.bytes.increment(self.stats.bytes - self.published.1);
        self.published = (self.stats.datagrams, self.stats.bytes);
    }

    /// Whether a sender (a TCP peer at accept, a datagram's source) may deliver here.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Counts one received message and says whether it is admitted.
    pub fn admit(&mut self, len: usize, source: Source) -> bool {
        self.stats.datagrams += 1;
        self.stats.bytes += len as u64;
        match source {
            Source::Unix => true,
            Source::Inet(_) => {
                let ip = source.ip().expect("an inet source has an address");
                if self.allows(ip) {
                    return true;
                }
                self.stats.denied += 1;
                self.denied.increment(1);
                false
            }
            Source::Unknown => {
                if self.stats.unknown_family == 0 {
                    // Once per listener: a socket of the wrong family is a deployment error
                    // (every datagram after this one is only counted).
                    warn!(listener = %self.name,
                        "datagram from a sender that is neither IPv4 nor IPv6 refused (unknown address family)");
                }
                self.stats.denied += 1;
                self.stats.unknown_family += 1;
                self.unknown_family.increment(1);
                false
            }
        }
    }

    /// The receive counts plus what `sink` did; logged as the listener stops.
    fn finish(&mut self, sink: &impl MessageSink) -> ListenerStats {
        self.publish();
        let mut stats = self.stats;
        sink.add_stats(&mut stats);
        info!(listener = %self.name, ?stats, "listener stopped");
        stats
    }
}

/// Receives until `shutdown`, then drains what the kernel already queued for the socket (UDP,
/// unix) or what connections already sent (TCP), flushes the sink and returns. Dropping the
/// returned future instead loses what the sink holds: cancel through `shutdown`.
pub async fn run_with<S: MessageSink>(
    listener: BoundListener,
    sink: S,
    shutdown: CancellationToken,
) -> Result<ListenerStats, ListenerError> {
    let mut admission = Admission::new(listener.name.clone(), listener.allow.clone());
    let name = listener.name.to_string();
    let r = match &listener.socket {
        bind::BoundSocket::Tcp(_) => tcp::run(&listener, &mut admission, sink, shutdown).await,
        _ => datagram::run(&listener, &mut admission, sink, shutdown).await,
    };
    r.map_err(|e| match e {
        LoopError::Io(source) => ListenerError::Receive { name, source },
        LoopError::Sink(source) => ListenerError::Sink { name, source },
    })
}

/// Spool off: decode and batch in the listener, hand batches to the writer over `tx`.
pub async fn run(
    listener: BoundListener,
    parser: Parser,
    limits: BatchLimits,
    tx: mpsc::Sender<WriteBatch>,
    shutdown: CancellationToken,
) -> Result<ListenerStats, ListenerError> {
    let sink = BatchSink::new(listener.name.clone(), parser, limits, tx);
    run_with(listener, sink, shutdown).await
}

/// Why a receive loop stopped early.
enum LoopError {
    Io(std::io::Error),
    Sink(SinkError),
}

impl From<std::io::Error> for LoopError {
    fn from(e: std::io::Error) -> Self {
        LoopError::Io(e)
    }
}

impl From<SinkError> for LoopError {
    fn from(e: SinkError) -> Self {
        LoopError::Sink(e)
    }
}

#[cfg(test)]
mod tests;
