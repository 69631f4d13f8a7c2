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
    /// Seconds to wait for the ingestor to finish storing after the last send.
    #[arg(long, default_value_t = 10)]
    pub settle_secs: u64,
}

/// Rewrites the payload timestamp of a fixture line to `now_us` and, for sf1 lines, its
/// server id to `tag`. Returns `None` for lines it does not recognise (sent unchanged).
pub fn retime(line: &[u8], now_us: i64, tag: Option<i16>) -> Option<Vec<u8>> {
    if let Some(p) = find(line, b"sf1 ") {
        let ts_start = p + 4;
        let ts_end = ts_start + line[ts_start..].iter().position(|&b| b == b' ')?;
        let mut out = Vec::with_capacity(line.len() + 8);
        out.extend_from_slice(&line[..ts_start]);
        write!(out, "{}.{:03}", now_us.div_euclid(1_000_000), now_us.rem_euclid(1_000_000) / 1000).ok()?;
        let rest = &line[ts_end..];
        match tag {
            None => out.extend_from_slice(rest),
            Some(tag) => {
                // rest = " FE NET SID ..." — replace the third token.
                let mut spaces = rest.iter().enumerate().filter(|(_, b)| **b == b' ').map(|(i, _)| i);
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
    let open = line
        .windows(4)
        .position(|w| w[0] == b'[' && w[1].is_ascii_digit() && w[2].is_ascii_digit() && w[3] == b'/')?;
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
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
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

enum Target {
    Udp(UdpSocket, SocketAddr),
    Unix(UnixDatagram, PathBuf),
}

impl Target {
    fn send(&self, buf: &[u8]) -> std::io::Result<()> {
        loop {
            let r = match self {
                Target::Udp(s, a) => s.send_to(buf, a),
                Target::Unix(s, p) => s.send_to(buf, p),
            };
            match r {
                Ok(_) => return Ok(()),
                // A full unix socket queue pushes back; UDP on loopback does not.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

pub async fn run(cfg: Config, args: LoadgenArgs) -> Result<()> {
    let lines = read_lines(&args.fixture)?;
    if lines.is_empty() {
        bail!("{} holds no lines", args.fixture.display());
    }
    let target = match (&args.udp, &args.unix) {
        (Some(a), _) => {
            let s = UdpSocket::bind(if a.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" })?;
            Target::Udp(s, *a)
        }
        (None, Some(p)) => Target::Unix(UnixDatagram::unbound()?, p.clone()),
        (None, None) => {
            let a = cfg.listeners.first().map(|l| l.address.clone()).unwrap_or_default();
            let a: SocketAddr = a.parse().context("give --udp or --unix")?;
            Target::Udp(UdpSocket::bind("127.0.0.1:0")?, a)
        }
    };
    let conninfo = match args.database_url.clone().or(cfg.database_url.clone()) {
        Some(c) => c,
        None => std::fs::read_to_string(cfg.data_dir.join("conninfo")).with_context(|| {
            format!("no --database-url/DATABASE_URL and no {}/conninfo from `suiftly run`", cfg.data_dir.display())
        })?,
    };
    let total = args.count.unwrap_or(args.rate * args.duration_secs);
    let rate = args.rate.max(1);
    eprintln!("loadgen: sending {total} lines at {rate}/s from {}", args.fixture.display());
    let start_us = now_us();
    let started = Instant::now();
    let tag = args.server_id_tag;
    let sent = tokio::task::spawn_blocking(move || -> Result<u64> {
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut last_report = Instant::now();
        while sent < total {
            // Pace in 1 ms slices: everything due by now goes out.
            let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            let now = now_us();
            while sent < due {
                let line = &lines[(sent as usize) % lines.len()];
                let out = retime(line, now, Some(tag));
                target.send(out.as_deref().unwrap_or(line))?;
                sent += 1;
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                eprintln!("loadgen: {sent}/{total} sent ({:.0}/s)", sent as f64 / t0.elapsed().as_secs_f64());
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("loadgen: sent {sent} in {secs:.2}s ({:.0}/s)", sent as f64 / secs);
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
