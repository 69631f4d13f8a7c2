//! Sans-IO, zero-copy parser for the HAProxy log datagrams Suiftly meters.
//!
//! One syslog datagram (`&[u8]`) in, one [`LogRecord`] out, whose text fields borrow from the
//! datagram. The parser knows nothing of sockets, tokio, Arrow or PostgreSQL: `ingest` receives
//! datagrams and turns records into columns; this crate only decides what a line means. It does
//! not read the clock either — callers that want RFC3164 header dates pass `now` to
//! [`split_syslog`].
//!
//! Layout:
//! - [`syslog`](split_syslog): framing (`local`, `rfc3164`, `rfc5424`, raw, auto-detect), in
//!   `nom` combinators, plus a hand-written one-pass fast path for the record parser that only
//!   ever accepts (the grammar decides, and names, every rejection);
//! - `sf1`: Suiftly's own log-format (docs/haproxy/FORMAT.md), every column in the line;
//! - `stock`: HAProxy's `option httplog` / `option tcplog`, missing columns from
//!   [`SourceConfig`];
//! - `scan`: field splitting by 64-byte space masks (SSE2 on x86_64, SWAR elsewhere) and the
//!   number/IP/text leaves shared by the payloads;
//! - `time`: civil date → unix time (Hinnant's `days_from_civil`), RFC3164 year inference;
//! - `event`: [`derive_event_type`] for lines that do not carry an event type.
//!
//! Hot-path rules: no allocation per line (no `String`, `Vec`, `format!`), errors are a `Copy`
//! kind plus byte offset, no UTF-8 validation of whole lines (only of the few fields returned as
//! `&str`), and no panics on any input — every index is checked and every integer conversion is
//! checked or saturating. The proptest suite and the fuzz target in `fuzz/` hold it to that.
//! Two `unsafe` blocks, each with its reason: the SSE2 load of 16 checked bytes, and ASCII
//! bytes taken as `&str` without the UTF-8 validator. Every fast path has a test that holds it
//! to the general one (`scan` and `syslog` tests).

mod config;
mod error;
mod event;
mod scan;
mod sf1;
mod stock;
mod syslog;
mod time;

use std::collections::HashMap;
use std::net::IpAddr;

pub use config::{Framing, FrontendMapping, PayloadFormat, SourceConfig, UnknownName};
pub use error::{ErrorKind, ParseError};
pub use event::derive_event_type;
pub use syslog::{SyslogHeader, split_syslog};
pub use time::{civil_from_days, days_from_civil, infer_rfc3164_year};

/// One row of `haproxy_raw_logs` (spec section 3), borrowing its text from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// Unix epoch microseconds, UTC; HAProxy logs milliseconds, so the last 3 digits are 0.
    pub timestamp_us: i64,
    /// 1..=i32::MAX; `None` when the request was not authenticated.
    pub customer_id: Option<i32>,
    /// First 10 characters of the URL path after the leading `/` (the longest valid UTF-8
    /// prefix when the client sent other bytes).
    pub path_prefix: Option<&'a str>,
    /// 64-bit config word, u64 bits reinterpreted as i64.
    pub config_hex: Option<i64>,
    pub network: i16,
    pub server_id: i16,
    pub service_type: i16,
    pub api_key_fp: i64,
    pub fe_type: i16,
    pub traffic_type: i16,
    pub event_type: i16,
    /// `0.0.0.0` for clients on unix sockets.
    pub client_ip: IpAddr,
    /// u16 bits reinterpreted as i16.
    pub key_metadata: Option<i16>,
    pub status_code: i16,
    pub bytes_sent: i64,
    pub time_total: i32,
    /// HAProxy timers; `None` when the phase was not reached (`-1`).
    pub time_request: Option<i32>,
    pub time_queue: Option<i32>,
    pub time_connect: Option<i32>,
    pub time_response: Option<i32>,
    /// 0 when no server was selected, 1–9 local, 10–19 backup; `None` when the line cannot
    /// say (stock lines name the server, not its id).
    pub backend_id: Option<i16>,
    /// First two characters of HAProxy's termination flags, e.g. `--`, `SD`, `CH`.
    pub termination_state: Option<&'a str>,
    /// Identical requests this row stands for; always 1 from HAProxy.
    pub repeat: i32,
}

/// Frontend lookup built once per source. A handful of frontends is the norm, and comparing a
/// few short byte strings beats hashing the name; large maps keep the hash table.
#[derive(Debug)]
enum Frontends {
    Small(Vec<(Box<[u8]>, FrontendMapping)>),
    Hashed(HashMap<String, FrontendMapping>),
}

const LINEAR_SCAN_MAX: usize = 16;

/// A configured parser for one log source. Cheap to share: parsing takes `&self`.
#[derive(Debug)]
pub struct Parser {
    cfg: SourceConfig,
    frontends: Frontends,
}

impl Parser {
    pub fn new(cfg: SourceConfig) -> Self {
        let frontends = if cfg.frontends.len() <= LINEAR_SCAN_MAX {
            let mut v: Vec<_> = cfg
                .frontends
                .iter()
                .map(|(k, m)| (k.as_bytes().to_vec().into_boxed_slice(), *m))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            Frontends::Small(v)
        } else {
            Frontends::Hashed(cfg.frontends.clone())
        };
        Parser { cfg, frontends }
    }

    /// The configuration this parser was built with.
    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// Parses one datagram. Trailing `\n`, `\r` and `\0` are ignored; error offsets are byte
    /// offsets into `datagram` as given.
    pub fn parse<'a>(&self, datagram: &'a [u8]) -> Result<LogRecord<'a>, ParseError> {
        let dg = strip_trailer(datagram);
        if dg.is_empty() {
            return Err(ParseError::at(ErrorKind::Empty, 0));
        }
        let start = match syslog::payload_start(self.cfg.framing, dg) {
            Some(start) => start,
            // Malformed (or unusual) header: the `nom` grammar decides, and names the error.
            None => {
                let (_, payload) = syslog::split(self.cfg.framing, dg, None)?;
                dg.len() - payload.len()
            }
        };
        let payload = dg.get(start..).unwrap_or(&[]);
        if payload.is_empty() {
            return Err(ParseError::at(ErrorKind::Empty, start));
        }
        let is_sf1 = match self.cfg.payload {
            PayloadFormat::Suiftly => true,
            PayloadFormat::Auto => payload.starts_with(b"sf1 "),
            PayloadFormat::HttpLog | PayloadFormat::TcpLog => false,
        };
        // One call site for `sf1::parse`: it is inlined here and writes the record in place.
        if is_sf1 {
            sf1::parse(self, dg, start)
        } else {
            stock::parse(self, self.cfg.payload, dg, start)
        }
    }

    /// Mapping for a frontend name as logged (`%f`/`%ft`; the `~` that marks SSL is dropped),
    /// falling back to the default mapping.
    pub(crate) fn frontend(&self, name: &[u8]) -> Option<FrontendMapping> {
        let name = name.strip_suffix(b"~").unwrap_or(name);
        let found = match &self.frontends {
            Frontends::Small(v) => v.iter().find(|(k, _)| **k == *name).map(|(_, m)| *m),
            Frontends::Hashed(m) => std::str::from_utf8(name)
                .ok()
                .and_then(|n| m.get(n).copied()),
        };
        found.or(self.cfg.default_frontend)
    }
}

/// Drops the line terminators and NUL padding that senders append to datagrams.
fn strip_trailer(mut b: &[u8]) -> &[u8] {
    while let Some((last, rest)) = b.split_last() {
        if matches!(last, b'\n' | b'\r' | b'\0') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

#[cfg(test)]
mod tests;
