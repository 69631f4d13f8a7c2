//! `suiftly loadgen`: replays fixture lines at a fixed rate and checks what was stored.
//!
//! Lines are re-timed to the moment they are sent (fixtures are older than the retention
//! window would accept) and, for `sf1` lines, their server id is set to a tag
//! (`--server-id-tag`, default 4095 = region 255 / server 15, reserved for load tests) so the
//! stored rows of this run can be counted exactly: `stored` = rows with that server id and a
//! timestamp inside the run; `lost` = sent − stored. Stock-format lines take their server id
//! from the listener configuration, so for those only the time window separates the run from
//! other traffic.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct LoadgenArgs {
    /// UDP target, e.g. 127.0.0.1:5514.
    #[arg(long, conflicts_with = "unix")]
    pub udp: Option<SocketAddr>,
    /// Unix datagram socket path.
    #[arg(long)]
    pub unix: Option<PathBuf>,
    /// Lines per second.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Seconds to send for (ignored when --count is given).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Total lines to send.
    #[arg(long)]
    pub count: Option<u64>,
    /// Fixture file, one datagram per line.
    #[arg(long, default_value = "fixtures/haproxy/local-sf1.log")]
    pub fixture: PathBuf,
    /// Server id written into sf1 lines to recognise this run's rows.
    #[arg(long, default_value_t = 4095)]
    pub server_id_tag: i16,
    /// Where to count stored rows; defaults to DATABASE_URL or <data_dir>/conninfo.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Send even when the fixture's customer ids are customers of the target database (their
    /// traffic would be billed to them). Off by default: test traffic never bills anyone.
    #[arg(long)]
    pub allow_billing: bool,
    /// Seconds to wait for the ingestor to finish storing after the last send.
    #[arg(long, default_value_t = 10)]
    pub settle_secs: u64,
}

/// Rewrites the payload timestamp of a fixture line to `now_us` and, for sf1 lines, its
/// server id to `tag`. Returns `None` for lines it does not recognise (sent unchanged),
/// including an sf1 timestamp that is not `secs.mmm`: re-timing must not repair a malformed
/// line into a row.
pub fn retime(line: &[u8], now_us: i64, tag: Option<i16>) -> Option<Vec<u8>> {
    if let Some(p) = find(line, b"sf1 ") {
        let ts_start = p + 4;
        let ts_end = ts_start + line[ts_start..].iter().position(|&b| b == b' ')?;
        let (secs, ms) = line[ts_start..ts_end]
            .split_at(line[ts_start..ts_end].iter().position(|&b| b == b'.')?);
        if secs.is_empty()
            || !secs.iter().all(u8::is_ascii_digit)
            || ms.len() != 4
            || !ms[1..].iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let mut out = Vec::with_capacity(line.len() + 8);
        out.extend_from_slice(&line[..ts_start]);
        write!(
            out,
            "{}.{:03}",
            now_us.div_euclid(1_000_000),
            now_us.rem_euclid(1_000_000) / 1000
        )
        .ok()?;
        let rest = &line[ts_end..];
        match tag {
            None => out.extend_from_slice(rest),
            Some(tag) => {
                // rest = " FE NET SID ..." — replace the third token.
                let mut spaces = rest
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b' ')
                    .map(|(i, _)| i);
                let _fe = spaces.next()?;
                let _net = spaces.nth(1)?;
                let sid_start = _net + 1;
                let sid_end = spaces.next()?;
                out.extend_from_slice(&rest[..sid_start]);
                write!(out, "{tag}").ok()?;
                out.extend_from_slice(&rest[sid_end..]);
            }
        }
        return Some(out);
    }
    // Stock: `[dd/Mon/yyyy:HH:MM:SS.mmm]`
    let open = line.windows(4).position(|w| {
        w[0] == b'[' && w[1].is_ascii_digit() && w[2].is_ascii_digit() && w[3] == b'/'
    })?;
    let close = open + line[open..].iter().position(|&b| b == b']')?;
    let dt: DateTime<Utc> = DateTime::from_timestamp_micros(now_us)?;
    let mut out = Vec::with_capacity(line.len());
    out.extend_from_slice(&line[..open + 1]);
    write!(out, "{}", dt.format("%d/%b/%Y:%H:%M:%S%.3f")).ok()?;
    out.extend_from_slice(&line[close..]);
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Reads a fixture file: one datagram per line, trailing newline stripped.
pub fn read_lines(path: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect())
}

/// A fixture line rendered once, with the byte range its timestamp occupies, so each send
/// only patches the time in place (HAProxy's time fields are fixed-width).
struct Template {
    bytes: Vec<u8>,
    /// (offset, Stamp kind) of the timestamp to patch.
    stamp: Option<(usize, Stamp)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// `%Ts.%ms`: 14 bytes.
    Sf1,
    /// `dd/Mon/yyyy:HH:MM:SS.mmm`: 24 bytes.
    Accept,
}

/// Customer ids of the `sf1` lines (field 8).
pub fn fixture_customer_ids(lines: &[Vec<u8>]) -> Vec<i32> {
    let mut ids: Vec<i32> = lines
        .iter()
        .filter_map(|l| {
            let p = find(l, b"sf1 ")?;
            let s = std::str::from_utf8(&l[p..]).ok()?;
            s.split_whitespace().nth(7)?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Test traffic never bills anyone (docs/BILLING.md): billing charges usage of existing
/// customers only, so load-test lines must not carry a customer id of the target database.
async fn refuse_billed_traffic(conninfo: &str, lines: &[Vec<u8>]) -> Result<()> {
    let ids = fixture_customer_ids(lines);
    let client = suiftly_ingest::writer::connect(conninfo).await?;
    let billed: Vec<i32> = client
        .query(
            "SELECT customer_id FROM customers WHERE customer_id = ANY($1) ORDER BY 1",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !billed.is_empty() {
        bail!(
            "the fixture's lines carry customer ids {billed:?}, customers of this database: their traffic would be billed to them (use another fixture or database, or --allow-billing)"
        );
    }
    Ok(())
}

fn templates(lines: &[Vec<u8>], tag: Option<i16>) -> Vec<Template> {
    let probe_us = now_us();
    lines
        .iter()
        .map(|l| match retime(l, probe_us, tag) {
            Some(b) => {
                let stamp = find(&b, b"sf1 ").map(|p| (p + 4, Stamp::Sf1)).or_else(|| {
                    b.windows(4)
                        .position(|w| {
                            w[0] == b'['
                                && w[1].is_ascii_digit()
                                && w[2].is_ascii_digit()
                                && w[3] == b'/'
                        })
                        .map(|p| (p + 1, Stamp::Accept))
                });
                Template { bytes: b, stamp }
            }
            None => Template {
                bytes: l.clone(),
                stamp: None,
            },
        })
        .collect()
}

/// The two fixed-width renderings of one millisecond.
struct Stamps {
    ms: i64,
    sf1: [u8; 14],
    accept: [u8; 24],
}

impl Stamps {
    fn at(ms: i64) -> Stamps {
        let mut sf1 = [0u8; 14];
        let s = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
        sf1[..s.len().min(14)].copy_from_slice(&s.as_bytes()[..s.len().min(14)]);
        let mut accept = [0u8; 24];
        if let Some(dt) = DateTime::<Utc>::from_timestamp_millis(ms) {
            let a = dt.format("%d/%b/%Y:%H:%M:%S%.3f").to_string();
            accept[..a.len().min(24)].copy_from_slice(&a.as_bytes()[..a.len().min(24)]);
        }
        Stamps { ms, sf1, accept }
    }
}

/// Sends many datagrams per syscall with `sendmmsg(2)`.
struct Sender {
    fd: std::os::fd::OwnedFd,
    addr: libc::sockaddr_storage,
    addr_len: libc::socklen_t,
    bufs: Vec<Vec<u8>>,
}

const SEND_BATCH: usize = 64;

impl Sender {
    fn udp(to: SocketAddr) -> Result<Sender> {
        let s = UdpSocket::bind(if to.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        })?;
        let sa: socket2::SockAddr = to.into();
        Ok(Self::new(s.into(), &sa))
    }

    fn unix(path: &std::path::Path) -> Result<Sender> {
        let s = UnixDatagram::unbound()?;
        let sa = socket2::SockAddr::unix(path)?;
        Ok(Self::new(s.into(), &sa))
    }

    fn new(fd: std::os::fd::OwnedFd, sa: &socket2::SockAddr) -> Sender {
        // SAFETY: sockaddr_storage is plain data; we copy at most its size from `sa`.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = (sa.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                (&mut addr as *mut libc::sockaddr_storage).cast::<u8>(),
                len,
            )
        };
        Sender {
            fd,
            addr,
            addr_len: len as libc::socklen_t,
            bufs: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Sends every queued datagram; a blocking socket (unix) waits for queue space, which is
    /// the push-back a unix datagram transport gives.
    fn flush(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut done = 0;
        while done < self.bufs.len() {
            let n = self.bufs.len() - done;
            let mut iov: Vec<libc::iovec> = self.bufs[done..]
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr is valid; pointers below stay alive during the call.
            let mut hdrs: Vec<libc::mmsghdr> =
                (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (&mut self.addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = self.addr_len;
            }
            // SAFETY: hdrs/iov/addr outlive the call and describe valid buffers.
            let r = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), hdrs.as_mut_ptr(), n as libc::c_uint, 0)
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.kind() == std::io::ErrorKind::WouldBlock
                {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                return Err(e);
            }
            done += r as usize;
        }
        self.bufs.clear();
        Ok(())
    }
}

pub async fn run(cfg: Config, args: LoadgenArgs) -> Result<()> {
    let lines = read_lines(&args.fixture)?;
    if lines.is_empty() {
        bail!("{} holds no lines", args.fixture.display());
    }
    let mut sender = match (&args.udp, &args.unix) {
        (Some(a), _) => Sender::udp(*a)?,
        (None, Some(p)) => Sender::unix(p)?,
        (None, None) => {
            let a = cfg
                .listeners
                .first()
                .map(|l| l.address())
                .unwrap_or_default();
            Sender::udp(a.parse().context("give --udp or --unix")?)?
        }
    };
    let conninfo = match args.database_url.clone().or(cfg.database_url.clone()) {
        Some(c) => c,
        None => std::fs::read_to_string(cfg.data_dir.join("conninfo")).with_context(|| {
            format!(
                "no --database-url/DATABASE_URL and no {}/conninfo from `suiftly run`",
                cfg.data_dir.display()
            )
        })?,
    };
    if !args.allow_billing {
        refuse_billed_traffic(&conninfo, &lines).await?;
    }
    let total = args.count.unwrap_or(args.rate * args.duration_secs);
    let rate = args.rate.max(1);
    eprintln!(
        "loadgen: sending {total} lines at {rate}/s from {}",
        args.fixture.display()
    );
    let start_us = now_us();
    let started = Instant::now();
    let tag = args.server_id_tag;
    let templates = templates(&lines, Some(tag));
    let sent = tokio::task::spawn_blocking(move || -> Result<u64> {
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut last_report = Instant::now();
        let mut stamps = Stamps::at(now_us() / 1000);
        while sent < total {
            // Pace in 0.5 ms slices: everything due by now goes out.
            let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            let ms = now_us() / 1000;
            if ms != stamps.ms {
                stamps = Stamps::at(ms);
            }
            while sent < due {
                let t = &templates[(sent as usize) % templates.len()];
                let mut buf = t.bytes.clone();
                match t.stamp {
                    Some((off, Stamp::Sf1)) if off + 14 <= buf.len() => {
                        buf[off..off + 14].copy_from_slice(&stamps.sf1)
                    }
                    Some((off, Stamp::Accept)) if off + 24 <= buf.len() => {
                        buf[off..off + 24].copy_from_slice(&stamps.accept)
                    }
                    _ => {}
                }
                sender.bufs.push(buf);
                sent += 1;
                if sender.bufs.len() == SEND_BATCH {
                    sender.flush()?;
                }
            }
            sender.flush()?;
            if last_report.elapsed() >= Duration::from_secs(5) {
                eprintln!(
                    "loadgen: {sent}/{total} sent ({:.0}/s)",
                    sent as f64 / t0.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "loadgen: sent {sent} in {secs:.2}s ({:.0}/s)",
            sent as f64 / secs
        );
        Ok(sent)
    })
    .await??;
    let end_us = now_us();
    let client = suiftly_ingest::writer::connect(&conninfo).await?;
    let count = || async {
        let row = client
            .query_one(
                "SELECT count(*) FROM haproxy_raw_logs WHERE server_id = $1 \
                 AND \"timestamp\" >= to_timestamp($2::float8 / 1e6) - interval '1 second' \
                 AND \"timestamp\" <= to_timestamp($3::float8 / 1e6) + interval '1 second'",
                &[&tag, &(start_us as f64), &(end_us as f64)],
            )
            .await?;
        anyhow::Ok(row.get::<_, i64>(0) as u64)
    };
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let mut stored = count().await?;
    let mut last_change = Instant::now();
    while stored < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = count().await?;
        if s != stored {
            last_change = Instant::now();
        }
        stored = s;
        if last_change.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    // Time from the first send until the last row was seen committed (±100 ms polling).
    let e2e_secs = last_change.duration_since(started).as_secs_f64();
    let lost = sent as i64 - stored as i64;
    let secs = (end_us - start_us) as f64 / 1e6;
    println!(
        "sent={sent} stored={stored} lost={lost} send_secs={secs:.2} send_rate={:.0}/s e2e_secs={e2e_secs:.2} stored_rate={:.0}/s",
        sent as f64 / secs,
        stored as f64 / e2e_secs
    );
    if lost != 0 {
        bail!("{lost} lines not stored (negative = duplicates)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_customer_ids_are_read_from_sf1_lines() {
        let lines = vec![
            b"<134>Nov 26 02:22:49 haproxy[1]: sf1 1795659769.248 fe_sf1 1 17 2 2 12345 00ff 1 1 1 - 1.2.3.4 200 1 0 0 1 2 3 1 -- /x".to_vec(),
            b"<134>Nov 26 02:22:49 haproxy[1]: sf1 1795659769.254 fe_sf1 1 17 2 2 - - - - 3 10 ::1 401 1 0 -1 -1 -1 0 - PR /y".to_vec(),
            b"not a line".to_vec(),
            b"<134>Nov 26 02:22:49 haproxy[1]: sf1 1795659769.254 fe_sf1 1 17 2 2 42 0 -4 1 1 - unix 200 1 0 0 0 2 2 3 -- /z".to_vec(),
        ];
        assert_eq!(fixture_customer_ids(&lines), [42, 12345]);
    }

    #[test]
    fn retimes_sf1_and_tags_server() {
        let line = b"<134>Nov 26 02:10:57 haproxy[1]: sf1 1764122457.123 fe 1 17 2 2 12345 - 0 - 1 - 1.2.3.4 200 5 0 0 1 3 4 1 -- /x";
        let out = retime(line, 1_800_000_000_456_789, Some(4095)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<134>Nov 26 02:10:57 haproxy[1]: sf1 1800000000.456 fe 1 4095 2 2 12345 - 0 - 1 - 1.2.3.4 200 5 0 0 1 3 4 1 -- /x"
        );
    }

    #[test]
    fn retimes_httplog() {
        let line = b"<134>Nov 26 02:10:57 haproxy[9]: 127.0.0.1:5000 [26/Nov/2026:02:10:57.123] fe be/s1 0/0/0/1/1 200 10 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"";
        let out = retime(line, 1_795_658_400_000_000 + 1_234_000, None).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("[26/Nov/2026:02:00:01.234]"), "{s}");
        assert!(s.starts_with("<134>Nov 26 02:10:57 haproxy[9]: 127.0.0.1:5000 ["));
    }

    #[test]
    fn unknown_lines_are_left_alone() {
        assert_eq!(retime(b"garbage", 0, None), None);
    }
}
