//! An independent witness of what the ingestor accepted and stored, for the fault and
//! metering tests: it never asks the process under test what it did.
//!
//! - [`read_spool`] / [`SpoolTail`]: a second decoder of the spool's on-disk format (segment
//!   header, `SPRC` frames, CRC32C computed here), so that a recovery that cuts too much, or a
//!   listener that skips lines, cannot shrink "accepted" and "stored" alike unnoticed.
//! - [`UnixSender`]: sends sequence-numbered lines to a unix datagram socket. A unix datagram
//!   send succeeds only once the datagram is queued on the receiving socket (it fails while
//!   the ingestor is down, and waits while its queue is full), so the sender knows exactly
//!   which lines reached the ingestor. A window bounds what can be in flight: the sender never
//!   gets more than `window` lines ahead of the newest line it has seen in the spool, so at a
//!   SIGKILL at most `window` lines are between the socket and the spool.
//! - [`UdpSender`] and [`udp_socket_counters`]: for UDP, what was sent and the receiving
//!   socket's own drop counter (`/proc/net/udp`), so every missing line must be a counted drop.
//! - [`stored`]: the sequence numbers in `haproxy_raw_logs`, read with a plain client.
//! - [`pgproxy`]: a PostgreSQL protocol relay that can lose a COMMIT reply.
#![allow(dead_code)]

pub mod pgproxy;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli), bitwise table: independent of the crate the spool uses.

fn crc32c_table() -> &'static [u32; 256] {
    static T: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    })
}

pub fn crc32c(parts: &[&[u8]]) -> u32 {
    let t = crc32c_table();
    let mut c = !0u32;
    for p in parts {
        for &b in *p {
            c = t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

// ---------------------------------------------------------------------------------------------
// The spool, read independently (format: spool/src/lib.rs).

const SEGMENT_HEADER: usize = 32;
const FRAME_HEADER: usize = 12;
const BODY_FIXED: usize = 11;

/// One whole, valid frame at the start of `buf`: (frame length, payload), `Ok(None)` when
/// `buf` ends before the frame does (an append still in progress, or a torn tail), `Err`
/// when the bytes are not a valid frame.
fn frame(buf: &[u8]) -> Result<Option<(usize, &[u8])>, String> {
    if buf.len() < FRAME_HEADER {
        return Ok(None);
    }
    if &buf[0..4] != b"SPRC" {
        return Err(format!("bad magic {:?}", &buf[0..4]));
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
    if !(BODY_FIXED..=BODY_FIXED + 26 + (1 << 20)).contains(&len) {
        return Err(format!("impossible body length {len}"));
    }
    if buf.len() < FRAME_HEADER + len {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    let body = &buf[FRAME_HEADER..FRAME_HEADER + len];
    if crc32c(&[&buf[0..8], body]) != crc {
        return Err("checksum mismatch".into());
    }
    let addr = match body[10] {
        0 => 0,
        4 => 6,
        6 => 18,
        7 => 26,
        k => return Err(format!("address kind {k}")),
    };
    if len < BODY_FIXED + addr {
        return Err("body shorter than its address".into());
    }
    Ok(Some((FRAME_HEADER + len, &body[BODY_FIXED + addr..])))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// What the spool holds, decoded here.
pub struct SpoolContents {
    /// Payloads in position order.
    pub payloads: Vec<Vec<u8>>,
    pub segments: usize,
    /// What ends the last segment when it is not a whole frame (a torn tail).
    pub tail: Option<String>,
}

impl SpoolContents {
    /// Sequence numbers of the payloads, in position order.
    pub fn seqs(&self) -> Vec<i64> {
        self.payloads.iter().map(|p| seq_of(p)).collect()
    }
}

/// Reads every segment of the spool at `dir` (the ingestor stopped or killed). Sealed
/// segments must be whole; the last one may end in a torn frame, reported in `tail`.
pub fn read_spool(dir: &Path) -> SpoolContents {
    let segs = segments(dir);
    assert!(!segs.is_empty(), "no spool segment in {}", dir.display());
    let mut payloads = Vec::new();
    let mut tail = None;
    for (i, path) in segs.iter().enumerate() {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            data.len() >= SEGMENT_HEADER && &data[0..8] == b"SUISPOOL",
            "{}: bad segment header",
            path.display()
        );
        let mut off = SEGMENT_HEADER;
        loop {
            match frame(&data[off..]) {
                Ok(Some((n, payload))) => {
                    payloads.push(payload.to_vec());
                    off += n;
                }
                Ok(None) if off == data.len() => break,
                r => {
                    let what = match r {
                        Err(e) => e,
                        _ => format!("{} bytes of an unfinished frame", data.len() - off),
                    };
                    assert!(
                        i + 1 == segs.len(),
                        "{}: sealed segment damaged at {off}: {what}",
                        path.display()
                    );
                    tail = Some(format!("{what} at file offset {off}"));
                    break;
                }
            }
        }
    }
    SpoolContents {
        payloads,
        segments: segs.len(),
        tail,
    }
}

/// The sequence number a test line carries in sf1 field 9 (the key fingerprint).
pub fn seq_of(payload: &[u8]) -> i64 {
    let line = std::str::from_utf8(payload).expect("test lines are utf-8");
    line.split(' ')
        .nth(9)
        .and_then(|s| s.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in {line:?}"))
}

/// Follows a live spool from outside: the newest sequence number appended so far. Reads only
/// whole frames; when the bytes at its offset stop making sense (a restarted ingestor cut a
/// torn tail and appended over it) it starts the segment over.
pub struct SpoolTail {
    dir: PathBuf,
    seg: Option<PathBuf>,
    /// File offset of the first byte not yet decoded in `seg`.
    off: u64,
    /// Newest sequence number seen + 1 (0: none yet).
    pub seen: u64,
}

impl SpoolTail {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            seg: None,
            off: SEGMENT_HEADER as u64,
            seen: 0,
        }
    }

    pub fn poll(&mut self) -> u64 {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return self.seen;
        };
        let mut segs: Vec<PathBuf> = rd
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        for path in segs {
            if self.seg.as_ref().is_some_and(|s| &path < s) {
                continue;
            }
            if self.seg.as_ref() != Some(&path) {
                self.seg = Some(path.clone());
                self.off = SEGMENT_HEADER as u64;
            }
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(self.off)).is_err() || f.read_to_end(&mut buf).is_err() {
                continue;
            }
            let mut used = 0;
            loop {
                match frame(&buf[used..]) {
                    Ok(Some((n, payload))) => {
                        self.seen = self.seen.max(seq_of(payload) as u64 + 1);
                        used += n;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // Not a frame boundary any more: read this segment again from the top
                        // at the next poll.
                        self.off = SEGMENT_HEADER as u64;
                        used = 0;
                        break;
                    }
                }
            }
            self.off += used as u64;
        }
        self.seen
    }
}

// ---------------------------------------------------------------------------------------------
// The unix datagram sender.

struct Shared {
    /// Lines whose send succeeded (= the next sequence number). Held while sending, so a
    /// holder of the lock sees a count no send is half-way through.
    sent: Mutex<u64>,
    /// Newest sequence number seen in the spool + 1.
    seen: AtomicU64,
    /// The window's base never falls below this (set after a kill: lines lost with the
    /// killed process will never show up in the spool).
    floor: AtomicU64,
    /// Sends refused because nothing was bound to the path (the ingestor was down).
    refused: AtomicU64,
    stop: AtomicBool,
}

pub struct UnixSender {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub window: u64,
}

/// The sender, stopped between two sends (see [`UnixSender::pause`]).
pub struct Paused<'a> {
    guard: MutexGuard<'a, u64>,
    shared: &'a Shared,
}

impl Paused<'_> {
    /// Lines sent successfully so far.
    pub fn sent(&self) -> u64 {
        *self.guard
    }
    /// The window restarts from here: what was sent so far is either in the spool or lost.
    pub fn restart_window(&self) {
        self.shared.floor.store(*self.guard, Ordering::SeqCst);
    }
}

impl UnixSender {
    /// Sends `line(seq)` for seq = 0, 1, … to the socket at `path`, at most `rate` lines a
    /// second and at most `window` lines ahead of the spool at `spool_dir`. A send refused
    /// because the ingestor is down, or blocked because its queue is full, is retried with
    /// the same sequence number.
    pub fn start(
        path: &Path,
        spool_dir: &Path,
        rate: u64,
        window: u64,
        line: impl Fn(u64) -> String + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            sent: Mutex::new(0),
            seen: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let path = path.to_path_buf();
        let mut tail = SpoolTail::new(spool_dir);
        let thread = std::thread::spawn(move || {
            let sock = UnixDatagram::unbound().unwrap();
            sock.set_nonblocking(true).unwrap();
            let t0 = Instant::now();
            let mut last_poll = Instant::now();
            while !sh.stop.load(Ordering::SeqCst) {
                if last_poll.elapsed() >= Duration::from_millis(10) {
                    sh.seen.store(tail.poll(), Ordering::SeqCst);
                    last_poll = Instant::now();
                }
                let next = *sh.sent.lock().unwrap_or_else(|e| e.into_inner());
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                if next >= due {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let base = sh
                    .seen
                    .load(Ordering::SeqCst)
                    .max(sh.floor.load(Ordering::SeqCst));
                if next >= base + window {
                    sh.seen.store(tail.poll(), Ordering::SeqCst);
                    last_poll = Instant::now();
                    let base = sh
                        .seen
                        .load(Ordering::SeqCst)
                        .max(sh.floor.load(Ordering::SeqCst));
                    if next >= base + window {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    continue;
                }
                let mut sent = sh.sent.lock().unwrap_or_else(|e| e.into_inner());
                let text = line(*sent);
                match sock.send_to(text.as_bytes(), &path) {
                    Ok(n) => {
                        assert_eq!(n, text.len(), "a datagram is sent whole");
                        *sent += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        drop(sent);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::ConnectionRefused | ErrorKind::NotFound
                        ) =>
                    {
                        drop(sent);
                        sh.refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("sending to {}: {e}", path.display()),
                }
            }
        });
        Self {
            shared,
            thread: Some(thread),
            window,
        }
    }

    /// Newest sequence number seen in the spool + 1.
    pub fn seen(&self) -> u64 {
        self.shared.seen.load(Ordering::SeqCst)
    }

    /// Sends refused while the ingestor was down.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Holds the sender between two sends until the guard is dropped.
    pub fn pause(&self) -> Paused<'_> {
        Paused {
            guard: self.shared.sent.lock().unwrap_or_else(|e| e.into_inner()),
            shared: &self.shared,
        }
    }

    /// Waits (bounded) until the spool shows `n` lines, i.e. sequence number `n - 1`.
    pub fn wait_seen(&self, n: u64, limit: Duration, what: &str) {
        let t0 = Instant::now();
        while self.seen() < n {
            assert!(
                t0.elapsed() < limit,
                "{what}: the spool shows {} lines of {n} after {limit:?}",
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops sending; returns how many lines were sent successfully.
    pub fn stop(&mut self) -> u64 {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("sender thread");
        }
        *self.shared.sent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for UnixSender {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kernel's limit on datagrams queued on one unix datagram socket (`max_dgram_qlen`; a
/// socket holds at most this + 1).
pub fn unix_max_dgram_qlen() -> u64 {
    std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .expect("/proc/sys/net/unix/max_dgram_qlen")
        .trim()
        .parse()
        .unwrap()
}

/// xorshift, seeded from the clock and printed so a failing run can be read back.
pub fn rnd(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Lines `start..sent` went out while the ingestor was up (each send succeeded, so each
/// datagram was queued on its socket); `before` is the spool as read after the previous kill
/// and `now` as read after this one. The spool must still hold `before` unchanged, then
/// exactly `start, start + 1, …` (one socket, read in order), and what is missing at the end
/// of the period must fit in the window: the newest lines were in the kernel queue or in the
/// listener when the process died. Returns how many lines this kill lost.
pub fn check_period(
    before: &[i64],
    now: &[i64],
    start: u64,
    sent: u64,
    window: u64,
    what: &str,
) -> u64 {
    if let Some(i) = (0..before.len()).find(|&i| now.get(i) != Some(&before[i])) {
        panic!(
            "{what}: the spool lost what it had accepted: record {i} was line {}, now {:?} \
             ({} records before, {} now)",
            before[i],
            now.get(i),
            before.len(),
            now.len()
        );
    }
    let new = &now[before.len()..];
    if let Some(i) = (0..new.len()).find(|&i| new[i] != (start + i as u64) as i64) {
        panic!(
            "{what}: line {} was sent while the ingestor was up and is not where the spool \
             has line {} (lines {start}..{sent} sent, {} in the spool)",
            start + i as u64,
            new[i],
            new.len()
        );
    }
    let accepted = start + new.len() as u64;
    assert!(accepted <= sent, "{what}: the spool holds lines never sent");
    let lost = sent - accepted;
    assert!(
        lost <= window,
        "{what}: {lost} lines sent while the ingestor was up are missing from the spool \
         (lines {accepted}..{sent}); at most the window ({window}) can be in flight"
    );
    lost
}

/// A seed from the clock (printed by the tests so a failing run can be read back).
pub fn clock_seed() -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64)
        | 1
}

// ---------------------------------------------------------------------------------------------
// UDP.

/// Sends `line(seq)` over UDP at `rate` per second until stopped, counting the sends the
/// kernel took (`send_to` returned the whole datagram).
pub struct UdpSender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpSender {
    pub fn start(port: u16, rate: u64, line: impl Fn(u64) -> String + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (st, se, fa) = (stop.clone(), sent.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let t0 = Instant::now();
            let mut seq = 0u64;
            while !st.load(Ordering::Relaxed) {
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                while seq < due {
                    let text = line(seq);
                    match s.send_to(text.as_bytes(), ("127.0.0.1", port)) {
                        Ok(n) if n == text.len() => {
                            seq += 1;
                            se.store(seq, Ordering::Relaxed);
                        }
                        // Not taken by the kernel: the same line again (sequence numbers
                        // stay dense).
                        _ => {
                            fa.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            sent,
            failed,
            thread: Some(thread),
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops; returns (lines sent, sends the kernel refused and were retried).
    pub fn stop(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("udp sender");
        }
        (self.sent(), self.failed.load(Ordering::Relaxed))
    }
}

impl Drop for UdpSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The receiving socket's own counters for the UDP socket bound to 127.0.0.1:`port`
/// (`/proc/net/udp`): (bytes queued unread, datagrams the kernel dropped). `None` when no such
/// socket exists.
pub fn udp_socket_counters(port: u16) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let want = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&want.as_str()) {
            return None;
        }
        let rx = u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok()?;
        let drops = f.get(12)?.parse().ok()?;
        Some((rx, drops))
    })
}

/// Waits (bounded) until the socket on `port` has nothing queued, then returns its drop count.
pub fn udp_drained_drops(port: u16, limit: Duration) -> u64 {
    let t0 = Instant::now();
    loop {
        let (rx, drops) = udp_socket_counters(port)
            .unwrap_or_else(|| panic!("no UDP socket on 127.0.0.1:{port} in /proc/net/udp"));
        if rx == 0 {
            return drops;
        }
        assert!(
            t0.elapsed() < limit,
            "the ingestor's socket still holds {rx} bytes after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL, read with a plain client.

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {conninfo}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Sequence number → how many rows of `haproxy_raw_logs` carry it; and the number of rejected
/// lines.
pub fn stored(conninfo: &str) -> (BTreeMap<i64, u32>, i64) {
    block_on(async {
        let c = connect(conninfo).await;
        let mut m = BTreeMap::new();
        for r in c
            .query("SELECT api_key_fp FROM haproxy_raw_logs", &[])
            .await
            .unwrap()
        {
            *m.entry(r.get::<_, i64>(0)).or_insert(0) += 1;
        }
        let rejected: i64 = c
            .query_one("SELECT count(*) FROM haproxy_rejected_lines", &[])
            .await
            .unwrap()
            .get(0);
        (m, rejected)
    })
}

/// Rows in `haproxy_raw_logs`.
pub fn stored_count(conninfo: &str) -> i64 {
    block_on(async {
        connect(conninfo)
            .await
            .query_one("SELECT count(*) FROM haproxy_raw_logs", &[])
            .await
            .unwrap()
            .get(0)
    })
}

/// A few elements of a set, for messages.
pub fn some<T: std::fmt::Debug>(it: impl IntoIterator<Item = T>) -> String {
    let v: Vec<T> = it.into_iter().take(8).collect();
    format!("{v:?}")
}

/// `stored` holds exactly the sequence numbers `want`, each once.
pub fn assert_stored_exactly(want: &[i64], stored: &BTreeMap<i64, u32>, what: &str) {
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what}: stored twice: {}", some(twice));
    let want_set: std::collections::BTreeSet<i64> = want.iter().copied().collect();
    assert_eq!(
        want_set.len(),
        want.len(),
        "{what}: the spool holds a line twice"
    );
    let missing: Vec<_> = want_set
        .iter()
        .filter(|k| !stored.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: accepted but not stored: {} ({} of {})",
        some(&missing),
        missing.len(),
        want.len()
    );
    let extra: Vec<_> = stored.keys().filter(|k| !want_set.contains(k)).collect();
    assert!(
        extra.is_empty(),
        "{what}: stored but never accepted: {}",
        some(extra)
    );
}

/// Lines `0..sent` went to a UDP socket whose kernel counted `drops` drops: every line is
/// stored, or one of the dropped (a line the ingestor read and lost shows up here).
pub fn assert_accounted(sent: u64, stored: &BTreeMap<i64, u32>, drops: u64, what: &str) {
    let extra: Vec<_> = stored
        .keys()
        .filter(|&&s| !(0..sent as i64).contains(&s))
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: stored lines never sent: {}",
        some(extra)
    );
    let missing: Vec<i64> = (0..sent as i64)
        .filter(|s| !stored.contains_key(s))
        .collect();
    assert_eq!(
        missing.len() as u64,
        drops,
        "{what}: every line sent is stored or counted as dropped by the socket; missing {} \
         (e.g. {}), the kernel dropped {drops}",
        missing.len(),
        some(&missing)
    );
}
