//! Datagram listeners: UDP and unix-datagram sockets feeding the batch builder.
//!
//! Each listener is one tokio task that owns its socket, its [`RecvBuffers`], its parser and
//! its [`RawBatchBuilder`]. It parses straight out of the receive buffer and hands finished
//! [`WriteBatch`]es to the COPY writer over a bounded channel.
//!
//! Full-policy of that channel: **block**. A listener that cannot hand a batch over stops
//! reading its socket; the kernel buffer then absorbs the burst and, when it overflows, the
//! kernel drops and counts (`/proc/net/snmp` `Udp: RcvbufErrors`, exported by
//! [`crate::metrics::run_kernel_drop_sampler`]). Dropping in user space instead would lose
//! lines we could have kept, and would hide the loss from the kernel counter operators
//! already watch.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use suiftly_model::time::now_us;

use ipnet::IpNet;
use metrics::{Counter, counter, gauge};
use serde::Deserialize;
use socket2::{Domain, Socket, Type};
use suiftly_parser::{Framing, FrontendMapping, Parser, PayloadFormat, SourceConfig};
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::batch::{RawBatchBuilder, RejectReason, RejectedLine, WriteBatch};
use crate::recv::{RecvBuffers, Source};

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    Udp,
    Unix,
    /// Syslog over TCP (RFC 6587 framing), e.g. from a HAProxy `ring` section: a transport
    /// that pushes back instead of dropping.
    Tcp,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    pub service_type: i16,
    pub network: i16,
    pub fe_type: i16,
}

impl From<FrontendConfig> for FrontendMapping {
    fn from(f: FrontendConfig) -> Self {
        FrontendMapping {
            service_type: f.service_type,
            network: f.network,
            fe_type: f.fe_type,
        }
    }
}

fn default_rcvbuf() -> usize {
    8 * 1024 * 1024
}
fn default_max_datagram() -> usize {
    65_535
}
fn default_recv_batch() -> usize {
    crate::recv::MAX_BATCH
}
fn default_auto() -> String {
    "auto".into()
}
fn default_socket_mode() -> u32 {
    0o660
}

/// One `[[listener]]` table of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Label in metrics and in the rejected-lines table; keep it short and stable.
    pub name: String,
    pub kind: ListenerKind,
    /// `ip:port` for UDP, a filesystem path for unix.
    pub address: String,
    /// SO_RCVBUF request; the effective size is logged (the kernel may cap it at
    /// `net.core.rmem_max`, so root uses SO_RCVBUFFORCE when needed).
    #[serde(default = "default_rcvbuf")]
    pub receive_buffer_bytes: usize,
    /// Largest datagram kept intact; longer ones are stored as rejected `truncated_datagram`.
    #[serde(default = "default_max_datagram")]
    pub max_datagram_bytes: usize,
    /// Datagrams per `recvmmsg` call.
    #[serde(default = "default_recv_batch")]
    pub recv_batch: usize,
    /// Sender networks allowed (UDP). Empty means loopback only. Anyone who can reach a
    /// listener can forge usage that bills a customer, so a non-loopback bind address
    /// requires an explicit list.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// File mode of a unix socket: the filesystem permission is that listener's allowlist.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: u32,
    #[serde(default = "default_auto")]
    pub framing: String,
    #[serde(default = "default_auto")]
    pub payload: String,
    /// `(region_id << 4) | server_num` of the gateway sending to this listener.
    #[serde(default)]
    pub server_id: Option<i16>,
    /// Stock httplog/tcplog frontend name → columns.
    #[serde(default)]
    pub frontends: HashMap<String, FrontendConfig>,
    #[serde(default)]
    pub default_frontend: Option<FrontendConfig>,
    /// Offset of HAProxy's local time (stock `[accept_date]`) from UTC, in seconds.
    #[serde(default)]
    pub accept_date_utc_offset_secs: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("listener {name}: {msg}")]
    Config { name: String, msg: String },
    #[error("listener {name}: cannot bind {address}: {source}")]
    Bind {
        name: String,
        address: String,
        source: io::Error,
    },
}

impl ListenerConfig {
    /// A UDP listener with every other setting at its default (the configuration's default
    /// listener: loopback only).
    pub fn loopback_udp(name: &str, address: &str) -> ListenerConfig {
        ListenerConfig {
            name: name.into(),
            kind: ListenerKind::Udp,
            address: address.into(),
            receive_buffer_bytes: default_rcvbuf(),
            max_datagram_bytes: default_max_datagram(),
            recv_batch: default_recv_batch(),
            allow: Vec::new(),
            socket_mode: default_socket_mode(),
            framing: default_auto(),
            payload: default_auto(),
            server_id: None,
            frontends: HashMap::new(),
            default_frontend: None,
            accept_date_utc_offset_secs: 0,
        }
    }

    /// Builds the parser settings this listener hands to its [`Parser`].
    pub fn source_config(&self) -> Result<SourceConfig, ListenerError> {
        let err = |msg: String| ListenerError::Config {
            name: self.name.clone(),
            msg,
        };
        let framing: Framing = self
            .framing
            .parse()
            .map_err(|_| err(format!("unknown framing {:?}", self.framing)))?;
        let payload: PayloadFormat = self
            .payload
            .parse()
            .map_err(|_| err(format!("unknown payload {:?}", self.payload)))?;
        Ok(SourceConfig {
            framing,
            payload,
            server_id: self.server_id,
            frontends: self
                .frontends
                .iter()
                .map(|(k, v)| (k.clone(), (*v).into()))
                .collect(),
            default_frontend: self.default_frontend.map(Into::into),
            accept_date_utc_offset_secs: self.accept_date_utc_offset_secs,
        })
    }

    /// Range checks the types cannot express.
    pub fn validate(&self) -> Result<(), ListenerError> {
        let err = |msg: String| ListenerError::Config {
            name: self.name.clone(),
            msg,
        };
        if self.socket_mode > 0o777 {
            return Err(err(format!(
                "socket_mode {} is not a file mode; write it in octal, e.g. socket_mode = 0o660",
                self.socket_mode
            )));
        }
        if !(64..=1 << 20).contains(&self.max_datagram_bytes) {
            return Err(err("max_datagram_bytes must be within 64..=1048576".into()));
        }
        if self.recv_batch == 0 {
            return Err(err("recv_batch must be at least 1".into()));
        }
        self.source_config()?;
        self.effective_allow()?;
        Ok(())
    }

    /// The allowlist in force: the configured one, or loopback only.
    pub fn effective_allow(&self) -> Result<Vec<IpNet>, ListenerError> {
        if !self.allow.is_empty() {
            return Ok(self.allow.clone());
        }
        if self.kind != ListenerKind::Unix {
            let addr: SocketAddr = self.address.parse().map_err(|e| ListenerError::Config {
                name: self.name.clone(),
                msg: format!("bad address {:?}: {e}", self.address),
            })?;
            if !addr.ip().is_loopback() {
                return Err(ListenerError::Config {
                    name: self.name.clone(),
                    msg: format!(
                        "binds non-loopback {addr} without an `allow` list; anyone who can reach it could forge billable usage, so list the gateway networks explicitly"
                    ),
                });
            }
        }
        Ok(vec![
            "127.0.0.0/8".parse().expect("static"),
            "::1/128".parse().expect("static"),
        ])
    }
}

/// A bound socket, ready to run. Binding is separate from running so tests (and the demo)
/// can bind port 0 and learn the address before traffic starts.
pub struct BoundListener {
    pub name: Arc<str>,
    socket: BoundSocket,
    allow: Vec<IpNet>,
    max_datagram_bytes: usize,
    recv_batch: usize,
    /// Receive buffer granted by the kernel (half of what getsockopt reports).
    pub effective_rcvbuf: usize,
}

enum BoundSocket {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl BoundListener {
    pub(crate) fn allow(&self) -> &[IpNet] {
        &self.allow
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match &self.socket {
            BoundSocket::Udp(s) => s.as_raw_fd(),
            BoundSocket::Unix(s, _) => s.as_raw_fd(),
            BoundSocket::Tcp(s) => s.as_raw_fd(),
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            BoundSocket::Udp(s) => s.local_addr().ok(),
            BoundSocket::Tcp(s) => s.local_addr().ok(),
            BoundSocket::Unix(..) => None,
        }
    }
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        match &self.socket {
            BoundSocket::Unix(_, p) => Some(p),
            _ => None,
        }
    }
}

impl Drop for BoundListener {
    fn drop(&mut self) {
        if let BoundSocket::Unix(_, path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn set_rcvbuf(sock: &Socket, want: usize) -> usize {
    let want = want.min(libc::c_int::MAX as usize / 2);
    let _ = sock.set_recv_buffer_size(want);
    // Linux stores and reports twice the requested value (bookkeeping overhead), capped at
    // 2 × net.core.rmem_max; half the report is what we were granted. Root may exceed the cap
    // with SO_RCVBUFFORCE.
    let mut got = sock.recv_buffer_size().unwrap_or(0) / 2;
    if got < want {
        let v = want as libc::c_int;
        // SAFETY: plain setsockopt with a c_int value on a valid fd.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            got = sock.recv_buffer_size().unwrap_or(0) / 2;
        }
    }
    got
}

/// Binds the socket described by `cfg` (must be called inside a tokio runtime).
pub fn bind(cfg: &ListenerConfig) -> Result<BoundListener, ListenerError> {
    cfg.validate()?;
    let allow = cfg.effective_allow()?;
    let bind_err = |source: io::Error| ListenerError::Bind {
        name: cfg.name.clone(),
        address: cfg.address.clone(),
        source,
    };
    let (socket, effective) = match cfg.kind {
        ListenerKind::Udp => {
            let addr: SocketAddr = cfg.address.parse().map_err(|e| ListenerError::Config {
                name: cfg.name.clone(),
                msg: format!("bad address {:?}: {e}", cfg.address),
            })?;
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None).map_err(bind_err)?;
            let eff = set_rcvbuf(&s, cfg.receive_buffer_bytes);
            s.set_nonblocking(true).map_err(bind_err)?;
            s.bind(&addr.into()).map_err(bind_err)?;
            // SAFETY: the fd comes from a socket we own and have just configured.
            let std_sock = unsafe { std::net::UdpSocket::from_raw_fd(s.into_raw_fd()) };
            let t = tokio::net::UdpSocket::from_std(std_sock).map_err(bind_err)?;
            (BoundSocket::Udp(t), eff)
        }
        ListenerKind::Tcp => {
            let addr: SocketAddr = cfg.address.parse().map_err(|e| ListenerError::Config {
                name: cfg.name.clone(),
                msg: format!("bad address {:?}: {e}", cfg.address),
            })?;
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(bind_err)?;
            s.set_reuse_address(true).map_err(bind_err)?;
            let eff = set_rcvbuf(&s, cfg.receive_buffer_bytes);
            s.set_nonblocking(true).map_err(bind_err)?;
            s.bind(&addr.into()).map_err(bind_err)?;
            s.listen(1024).map_err(bind_err)?;
            // SAFETY: the fd comes from a socket we own and have just configured.
            let std_sock = unsafe { std::net::TcpListener::from_raw_fd(s.into_raw_fd()) };
            let t = tokio::net::TcpListener::from_std(std_sock).map_err(bind_err)?;
            (BoundSocket::Tcp(t), eff)
        }
        ListenerKind::Unix => {
            let path = PathBuf::from(&cfg.address);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(bind_err)?;
            }
            // A socket file left by a previous run blocks bind; it is ours to replace.
            match std::fs::remove_file(&path) {
                Ok(()) => debug!(path = %path.display(), "removed stale unix socket"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(bind_err(e)),
            }
            let s = Socket::new(Domain::UNIX, Type::DGRAM, None).map_err(bind_err)?;
            let eff = set_rcvbuf(&s, cfg.receive_buffer_bytes);
            s.set_nonblocking(true).map_err(bind_err)?;
            s.bind(&socket2::SockAddr::unix(&path).map_err(bind_err)?)
                .map_err(bind_err)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(cfg.socket_mode))
                .map_err(bind_err)?;
            // SAFETY: as above.
            let std_sock =
                unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(s.into_raw_fd()) };
            let t = tokio::net::UnixDatagram::from_std(std_sock).map_err(bind_err)?;
            (BoundSocket::Unix(t, path), eff)
        }
    };
    if effective < cfg.receive_buffer_bytes {
        warn!(listener = %cfg.name, requested = cfg.receive_buffer_bytes, effective,
            "receive buffer smaller than requested; raise net.core.rmem_max");
    } else {
        info!(listener = %cfg.name, address = %cfg.address, requested = cfg.receive_buffer_bytes,
            effective, "listener bound");
    }
    Ok(BoundListener {
        name: cfg.name.as_str().into(),
        socket,
        allow,
        max_datagram_bytes: cfg.max_datagram_bytes,
        recv_batch: cfg.recv_batch,
        effective_rcvbuf: effective,
    })
}

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
    pub datagrams: u64,
    pub bytes: u64,
    pub denied: u64,
    pub parsed: u64,
    pub rejected: u64,
    pub batches: u64,
}

struct Counters {
    datagrams: Counter,
    bytes: Counter,
    denied: Counter,
    parsed: Counter,
}

/// Receives, parses and batches until `shutdown`; then drains what the kernel already queued
/// for the socket, flushes what it holds and returns. Dropping the returned future instead
/// loses the unflushed batch: cancel through `shutdown`.
pub async fn run(
    listener: BoundListener,
    parser: Parser,
    limits: BatchLimits,
    tx: mpsc::Sender<WriteBatch>,
    shutdown: CancellationToken,
) -> io::Result<ListenerStats> {
    let b = Batcher::new(
        listener.name.clone(),
        parser,
        listener.allow.clone(),
        limits,
        tx,
    );
    run_with(listener, b, shutdown).await
}

/// The socket loop, for any [`MessageSink`].
pub(crate) async fn run_with<S: MessageSink>(
    listener: BoundListener,
    mut b: S,
    shutdown: CancellationToken,
) -> io::Result<ListenerStats> {
    if let BoundSocket::Tcp(l) = &listener.socket {
        return crate::tcp::run(l, listener.max_datagram_bytes, b, shutdown).await;
    }
    let mut bufs = RecvBuffers::new(listener.max_datagram_bytes, listener.recv_batch);
    let unix = matches!(listener.socket, BoundSocket::Unix(..));

    loop {
        let deadline = b.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                // The oldest row reached max_age.
                b.flush().await?;
            }
            r = recv_ready(&listener.socket, &mut bufs, unix) => {
                r?;
                ingest(&mut b, &bufs).await?;
            }
        }
    }
    // Whatever the kernel accepted before the stop is ours to keep; bounded in time so a
    // sender that never pauses cannot hold shutdown open.
    let fd = listener.raw_fd();
    let drain_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < drain_until {
        match bufs.recv(fd, unix) {
            Ok(0) => break,
            Ok(_) => ingest(&mut b, &bufs).await?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    b.flush().await?;
    info!(listener = %b.name(), stats = ?b.stats(), "listener stopped");
    Ok(b.stats())
}

/// Every datagram of one receive call into the sink, flushing at its bounds.
async fn ingest<S: MessageSink>(b: &mut S, bufs: &RecvBuffers) -> io::Result<()> {
    let now = now_us();
    for d in &bufs.datagrams {
        b.admit(bufs.bytes(d), d.source, d.truncated, now);
        // Batches are bounded exactly by max_rows, even mid-recvmmsg-batch.
        if b.full() {
            b.flush().await?;
        }
    }
    if b.flush_after_receive() {
        b.flush().await?;
    }
    Ok(())
}

/// A listener's parse-and-batch state, separate from its socket.
pub(crate) struct Batcher {
    pub(crate) name: Arc<str>,
    /// (listener name, parser) by listener index: one for a listener, all of them for the
    /// spool consumer, which sees every listener's records.
    parsers: Vec<(Arc<str>, Parser)>,
    /// `None`: the sender was already admitted (spooled records).
    pub(crate) allow: Option<Vec<IpNet>>,
    counters: Counters,
    stats: ListenerStats,
    builder: RawBatchBuilder,
    first_row_at: Option<Instant>,
    limits: BatchLimits,
    /// `None` when the owner takes batches itself ([`Batcher::take`]).
    tx: Option<mpsc::Sender<WriteBatch>>,
}

impl Batcher {
    /// A batcher fed by something other than a socket of its own (TCP connections, replay).
    pub(crate) fn new(
        name: Arc<str>,
        parser: Parser,
        allow: Vec<IpNet>,
        limits: BatchLimits,
        tx: mpsc::Sender<WriteBatch>,
    ) -> Self {
        Self::with_parsers(
            name.clone(),
            vec![(name, parser)],
            Some(allow),
            limits,
            Some(tx),
        )
    }

    /// The general form: several listeners' parsers (indexed like the configuration), no
    /// allowlist when senders were admitted earlier, and no channel when the owner takes
    /// batches itself.
    pub(crate) fn with_parsers(
        name: Arc<str>,
        parsers: Vec<(Arc<str>, Parser)>,
        allow: Option<Vec<IpNet>>,
        limits: BatchLimits,
        tx: Option<mpsc::Sender<WriteBatch>>,
    ) -> Self {
        let label = name.to_string();
        Batcher {
            name,
            parsers,
            allow,
            counters: Counters {
                datagrams: counter!("suiftly_ingest_datagrams_total", "listener" => label.clone()),
                bytes: counter!("suiftly_ingest_bytes_total", "listener" => label.clone()),
                denied: counter!("suiftly_ingest_datagrams_denied_total", "listener" => label.clone()),
                parsed: counter!("suiftly_ingest_lines_parsed_total", "listener" => label),
            },
            stats: ListenerStats::default(),
            builder: RawBatchBuilder::with_capacity(limits.max_rows),
            first_row_at: None,
            limits,
            tx,
        }
    }

    /// One message: allowlist, parse, time window, then a row or a rejected line. The caller
    /// flushes when [`Self::full`].
    pub(crate) fn admit(&mut self, bytes: &[u8], source: Source, truncated: bool, now: i64) {
        self.admit_from(0, bytes, source, truncated, now)
    }

    /// [`Self::admit`] with the parser of listener `index` (spooled records).
    pub(crate) fn admit_from(
        &mut self,
        index: usize,
        bytes: &[u8],
        source: Source,
        truncated: bool,
        now: i64,
    ) {
        self.stats.datagrams += 1;
        self.stats.bytes += bytes.len() as u64;
        self.counters.datagrams.increment(1);
        self.counters.bytes.increment(bytes.len() as u64);
        if let (Some(ip), Some(allow)) = (source.ip(), &self.allow)
            && !allow.iter().any(|net| net.contains(&ip))
        {
            self.stats.denied += 1;
            self.counters.denied.increment(1);
            return;
        }
        let (name, parser) = match self.parsers.get(index) {
            Some((n, p)) => (n.clone(), p),
            None => {
                // A spooled record of a listener no longer configured: kept, not guessed at.
                self.builder.reject(RejectedLine {
                    received_at_us: now,
                    listener: format!("listener#{index}").into(),
                    source_addr: None,
                    reason: RejectReason::UnknownListener,
                    error_offset: None,
                    raw: bytes.to_vec(),
                });
                if self.first_row_at.is_none() {
                    self.first_row_at = Some(Instant::now());
                }
                return;
            }
        };
        let max_past = self.limits.max_past.as_micros() as i64;
        let max_future = self.limits.max_future.as_micros() as i64;
        let reject = |reason: RejectReason, offset: Option<u32>| RejectedLine {
            received_at_us: now,
            listener: name.clone(),
            source_addr: match source {
                Source::Inet(a) => Some(a.to_string()),
                Source::Unix => None,
            },
            reason,
            error_offset: offset.map(|o| o as i32),
            raw: bytes.to_vec(),
        };
        if truncated {
            self.builder.reject(reject(RejectReason::Truncated, None));
        } else {
            match parser.parse(bytes) {
                Ok(rec) => {
                    if rec.timestamp_us < now - max_past || rec.timestamp_us > now + max_future {
                        self.builder
                            .reject(reject(RejectReason::TimestampOutOfRange, None));
                    } else if rec.path_prefix.is_some_and(|p| p.contains('\0'))
                        || rec.termination_state.is_some_and(|t| t.contains('\0'))
                    {
                        // PostgreSQL text cannot hold NUL; the batch would never commit.
                        self.builder.reject(reject(RejectReason::InvalidText, None));
                    } else {
                        self.builder.append(&rec);
                        self.stats.parsed += 1;
                        self.counters.parsed.increment(1);
                    }
                }
                Err(e) => self
                    .builder
                    .reject(reject(RejectReason::Parse(e.kind), Some(e.offset))),
            }
        }
        if self.first_row_at.is_none() {
            self.first_row_at = Some(Instant::now());
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.builder.len() >= self.limits.max_rows
    }

    /// When the oldest held line reaches max_age.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.first_row_at.map(|t| t + self.limits.max_age)
    }

    pub(crate) fn stats(&self) -> ListenerStats {
        self.stats
    }

    /// Takes what has accumulated (empty when nothing has).
    pub(crate) fn take(&mut self) -> WriteBatch {
        self.first_row_at = None;
        let batch = self.builder.finish();
        if !batch.is_empty() {
            self.stats.rejected += batch.rejected.len() as u64;
            for r in &batch.rejected {
                counter!("suiftly_ingest_lines_rejected_total", "reason" => r.reason.as_str())
                    .increment(1);
            }
            self.stats.batches += 1;
        }
        batch
    }

    /// Hands the current batch to the writer (block policy: waiting here stops socket reads).
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.builder.is_empty() {
            self.first_row_at = None;
            return Ok(());
        }
        let batch = self.take();
        let Some(tx) = &self.tx else {
            return Err(io::Error::other("batcher without a channel cannot flush"));
        };
        tx.send(batch)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "writer stopped"))?;
        gauge!("suiftly_ingest_channel_depth", "channel" => "batches")
            .set((tx.max_capacity() - tx.capacity()) as f64);
        Ok(())
    }
}

/// What a socket task hands its messages to: a [`Batcher`] (parse now, COPY from a channel)
/// or a [`crate::spooled::SpoolSink`] (append to the disk spool; parse later).
pub(crate) trait MessageSink: Send {
    fn name(&self) -> &Arc<str>;
    /// Whether a sender may deliver here at all.
    fn allows(&self, ip: std::net::IpAddr) -> bool;
    fn admit(&mut self, bytes: &[u8], source: Source, truncated: bool, now: i64);
    /// Flush now, before admitting more.
    fn full(&self) -> bool;
    /// When held messages must be flushed at the latest.
    fn deadline(&self) -> Option<Instant>;
    /// Flush after every receive call (spool: a receive batch is the commit unit).
    fn flush_after_receive(&self) -> bool;
    fn flush(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn stats(&self) -> ListenerStats;
}

impl MessageSink for Batcher {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
    fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|a| a.iter().any(|n| n.contains(&ip)))
    }
    fn admit(&mut self, bytes: &[u8], source: Source, truncated: bool, now: i64) {
        Batcher::admit(self, bytes, source, truncated, now)
    }
    fn full(&self) -> bool {
        Batcher::full(self)
    }
    fn deadline(&self) -> Option<Instant> {
        Batcher::deadline(self)
    }
    fn flush_after_receive(&self) -> bool {
        false
    }
    fn flush(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        Batcher::flush(self)
    }
    fn stats(&self) -> ListenerStats {
        Batcher::stats(self)
    }
}

async fn recv_ready(socket: &BoundSocket, bufs: &mut RecvBuffers, unix: bool) -> io::Result<()> {
    match socket {
        BoundSocket::Tcp(_) => unreachable!("tcp listeners run in crate::tcp"),
        BoundSocket::Udp(s) => {
            s.async_io(Interest::READABLE, || bufs.recv(s.as_raw_fd(), unix))
                .await?
        }
        BoundSocket::Unix(s, _) => {
            s.async_io(Interest::READABLE, || bufs.recv(s.as_raw_fd(), unix))
                .await?
        }
    };
    Ok(())
}
