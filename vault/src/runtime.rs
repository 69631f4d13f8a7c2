//! Pushing a vault version into running HAProxy processes through their runtime API (the
//! `stats socket ... level admin`), without a reload.
//!
//! On HAProxy 2.6 `set map` / `del map` per key scan the whole map, so a version is pushed
//! whole, the way the runtime API offers atomic replacement:
//! `prepare map` (allocates HAProxy's next map version) → `add map @<ver> <map> <<` with the
//! entries as a payload, in chunks that fit the CLI's request buffer (`tune.bufsize`, 16 KiB
//! by default; HAProxy drops the connection beyond it) → `commit map @<ver>` (atomic: lookups
//! see the old entries until this instant, the new ones after) → verification: `show map`
//! reports `curr_ver` = the committed version and `entry_cnt` = the version's line count, and
//! `get map <map> @suiftly-vault` returns the version marker with our sequence number and
//! content hash.
//!
//! Synchronous std sockets on purpose: the vault crate stays free of tokio; the async caller
//! runs [`push_all`] on a blocking thread. Each gateway gets its own thread and its own
//! timeouts and retries, so an unreachable gateway delays nobody else.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::content::{MARKER_KEY, MapFileError, MapHeader, map_lines};

/// Largest `add map` command (header line + payload + the empty line that ends it). HAProxy
/// 2.6 buffers one CLI request in `tune.bufsize` (16384 by default) and closes the connection
/// when it does not fit; 15 KiB leaves room for a smaller `tune.bufsize` reserve.
pub const CHUNK_BYTES: usize = 15 * 1024;

/// Where a gateway's runtime API listens: `unix:/run/haproxy/admin.sock` (or a bare absolute
/// path) or `tcp:10.0.0.5:9999` (or `host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Endpoint, RuntimeError> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(s.into()));
        }
        let addr = s.strip_prefix("tcp:").unwrap_or(s);
        if addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return Ok(Endpoint::Tcp(addr.to_string()));
        }
        Err(RuntimeError::BadEndpoint(s.to_string()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime api endpoint {0:?} is neither unix:<path> nor tcp:<host>:<port>")]
    BadEndpoint(String),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("runtime api io: {0}")]
    Io(#[from] io::Error),
    #[error(
        "haproxy closed the runtime api connection (request too large or socket not level admin?)"
    )]
    Closed,
    #[error("haproxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error("unexpected answer to `{command}`: {answer}")]
    Unexpected { command: String, answer: String },
    #[error("map {0} is not loaded by this haproxy (path must match the `map(...)` argument)")]
    NoSuchMap(String),
    #[error("map line longer than a push chunk ({0} bytes)")]
    LineTooLong(usize),
    #[error("the vault map to push is invalid: {0}")]
    BadMap(#[from] MapFileError),
    #[error(
        "verification failed: haproxy reports version {curr_ver} with {entry_cnt} entries, expected {want_ver} with {want_entries}"
    )]
    Verify {
        curr_ver: u64,
        entry_cnt: u64,
        want_ver: u64,
        want_entries: u64,
    },
    #[error("verification failed: the version marker says {found:?}, expected seq {seq}")]
    Marker {
        found: Option<(u64, String)>,
        seq: u64,
    },
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// One interactive (`prompt` mode) runtime API session.
pub struct RuntimeClient {
    conn: Box<dyn Conn>,
    buf: Vec<u8>,
}

impl RuntimeClient {
    /// Connects and enters interactive mode. `timeout` bounds the connect and every read and
    /// write.
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<RuntimeClient, RuntimeError> {
        let connect_err = |source| RuntimeError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let conn: Box<dyn Conn> = match endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).map_err(connect_err)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Box::new(s)
            }
            Endpoint::Tcp(addr) => {
                let sa = addr
                    .to_socket_addrs()
                    .map_err(connect_err)?
                    .next()
                    .ok_or_else(|| connect_err(io::ErrorKind::NotFound.into()))?;
                let s = TcpStream::connect_timeout(&sa, timeout).map_err(connect_err)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        let mut c = RuntimeClient {
            conn,
            buf: Vec::with_capacity(64 * 1024),
        };
        c.command("prompt")?;
        Ok(c)
    }

    /// Sends one command and returns HAProxy's answer without the trailing prompt and
    /// without the `+ ` continuation prompts that payload lines produce.
    pub fn command(&mut self, command: &str) -> Result<String, RuntimeError> {
        self.conn.write_all(command.as_bytes())?;
        self.conn.write_all(b"\n")?;
        self.conn.flush()?;
        self.read_answer()
    }

    fn read_answer(&mut self) -> Result<String, RuntimeError> {
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        while !self.buf.ends_with(b"\n> ") {
            let n = self.conn.read(&mut chunk)?;
            if n == 0 {
                return Err(RuntimeError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = &self.buf[..self.buf.len() - 3];
        let mut text = String::from_utf8_lossy(body).into_owned();
        while let Some(rest) = text.strip_prefix("+ ") {
            text = rest.to_string();
        }
        Ok(text.trim().to_string())
    }

    /// `prepare map`: HAProxy's next version number for `map`.
    pub fn prepare_map(&mut self, map: &str) -> Result<u64, RuntimeError> {
        let command = format!("prepare map {map}");
        let answer = self.command(&command)?;
        answer
            .strip_prefix("New version created:")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| refusal(command, answer, map))
    }

    /// `add map @<ver> <map> <<` with `lines` as the payload (must fit [`CHUNK_BYTES`]).
    pub fn add_map_payload(
        &mut self,
        ver: u64,
        map: &str,
        lines: &str,
    ) -> Result<(), RuntimeError> {
        let command = format!("add map @{ver} {map} <<\n{lines}");
        // `command` appends one "\n": with `lines` ending in "\n" that is the empty line that
        // ends the payload.
        let answer = self.command(&command)?;
        if answer.is_empty() {
            Ok(())
        } else {
            Err(refusal(format!("add map @{ver} {map}"), answer, map))
        }
    }

    pub fn commit_map(&mut self, ver: u64, map: &str) -> Result<(), RuntimeError> {
        let command = format!("commit map @{ver} {map}");
        let answer = self.command(&command)?;
        if answer.is_empty() {
            Ok(())
        } else {
            Err(refusal(command, answer, map))
        }
    }

    /// `show map` (the list of maps): (`curr_ver`, `entry_cnt`) of `map`.
    pub fn map_status(&mut self, map: &str) -> Result<(u64, u64), RuntimeError> {
        let answer = self.command("show map")?;
        let needle = format!("({map})");
        let line = answer
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
            .ok_or_else(|| RuntimeError::NoSuchMap(map.to_string()))?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.parse::<u64>().ok())
        };
        match (field("curr_ver="), field("entry_cnt=")) {
            (Some(v), Some(n)) => Ok((v, n)),
            _ => Err(RuntimeError::Unexpected {
                command: "show map".into(),
                answer: line.to_string(),
            }),
        }
    }

    /// The (seq, hash) of the vault version `map` currently matches against, from its
    /// version marker; `None` when the map has no marker (a map not written by the vault).
    pub fn applied(&mut self, map: &str) -> Result<Option<(u64, String)>, RuntimeError> {
        let command = format!("get map {map} {MARKER_KEY}");
        let answer = self.command(&command)?;
        if answer.contains("found=no") {
            return Ok(None);
        }
        if !answer.contains("found=yes") {
            return Err(refusal(command, answer, map));
        }
        // value="0,<word>,0,0,<seq>,<hash>"
        let value = answer
            .split("value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("");
        let mut f = value.split(',').skip(4);
        match (f.next().and_then(|s| s.parse().ok()), f.next()) {
            (Some(seq), Some(hash)) => Ok(Some((seq, hash.to_string()))),
            _ => Ok(None),
        }
    }
}

fn refusal(command: String, answer: String, map: &str) -> RuntimeError {
    if answer.contains("Unknown map identifier") || answer.contains("Unknown ACL") {
        RuntimeError::NoSuchMap(map.to_string())
    } else {
        RuntimeError::Refused { command, answer }
    }
}

/// Splits map lines into payloads of at most `limit` bytes including the `add map` command
/// line (`overhead`) and the terminating empty line.
fn chunks<'a>(
    lines: impl Iterator<Item = &'a str>,
    overhead: usize,
    limit: usize,
) -> Result<Vec<String>, RuntimeError> {
    let budget = limit.saturating_sub(overhead + 1);
    let mut out = Vec::new();
    let mut cur = String::with_capacity(budget);
    for l in lines {
        if l.len() + 1 > budget {
            return Err(RuntimeError::LineTooLong(l.len()));
        }
        if cur.len() + l.len() + 1 > budget {
            out.push(std::mem::take(&mut cur));
        }
        cur.push_str(l);
        cur.push('\n');
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// What one push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub seq: u64,
    pub hash: String,
    /// HAProxy's own map version after the commit (`curr_ver`); unchanged when skipped.
    pub haproxy_version: u64,
    pub entries: u64,
    /// The gateway already had this version (after a reload from the current file, or a
    /// push that verified in an earlier cycle): nothing was sent.
    pub already: bool,
    pub chunks: usize,
    pub bytes: u64,
}

/// Pushes the rendered vault `map_text` (a complete map file as
/// [`crate::VaultContent::render_map`] makes it) into the map `map` (the path as the gateway's
/// HAProxy config names it), unless the gateway already has that version.
pub fn push_version(
    client: &mut RuntimeClient,
    map: &str,
    map_text: &str,
) -> Result<Applied, RuntimeError> {
    let header = MapHeader::verify(map_text)?;
    if let Some((seq, hash)) = client.applied(map)?
        && seq == header.seq
        && hash == header.hash
    {
        let (ver, n) = client.map_status(map)?;
        if n == header.entries as u64 {
            return Ok(Applied {
                seq,
                hash,
                haproxy_version: ver,
                entries: n,
                already: true,
                chunks: 0,
                bytes: 0,
            });
        }
    }
    let ver = client.prepare_map(map)?;
    let overhead = format!("add map @{ver} {map} <<\n").len();
    let payloads = chunks(map_lines(map_text), overhead, CHUNK_BYTES)?;
    let mut bytes = 0u64;
    for p in &payloads {
        client.add_map_payload(ver, map, p)?;
        bytes += p.len() as u64;
    }
    client.commit_map(ver, map)?;
    let (curr_ver, entry_cnt) = client.map_status(map)?;
    if curr_ver != ver || entry_cnt != header.entries as u64 {
        return Err(RuntimeError::Verify {
            curr_ver,
            entry_cnt,
            want_ver: ver,
            want_entries: header.entries as u64,
        });
    }
    match client.applied(map)? {
        Some((seq, hash)) if seq == header.seq && hash == header.hash => {}
        found => {
            return Err(RuntimeError::Marker {
                found,
                seq: header.seq,
            });
        }
    }
    Ok(Applied {
        seq: header.seq,
        hash: header.hash,
        haproxy_version: ver,
        entries: entry_cnt,
        already: false,
        chunks: payloads.len(),
        bytes,
    })
}

/// One gateway: a name for metrics and logs, its runtime API, and the map path its HAProxy
/// config uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub name: String,
    pub endpoint: Endpoint,
    pub map: String,
}

/// Timeouts and retries of one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPolicy {
    /// Connect, read and write timeout of each socket operation.
    pub io_timeout: Duration,
    /// Attempts per gateway in one call (≥ 1).
    pub attempts: u32,
    /// Pause before the second attempt; doubles each time.
    pub backoff: Duration,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            io_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// The result for one gateway.
#[derive(Debug)]
pub struct GatewayOutcome {
    pub gateway: String,
    pub result: Result<Applied, RuntimeError>,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Pushes `map_text` to every gateway in parallel (one thread each); returns one outcome per
/// gateway in input order. A gateway that fails after its attempts is reported, never waited
/// for beyond its own timeouts.
pub fn push_all(gateways: &[Gateway], map_text: &str, policy: &PushPolicy) -> Vec<GatewayOutcome> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = gateways
            .iter()
            .map(|g| scope.spawn(move || push_one(g, map_text, policy)))
            .collect();
        handles
            .into_iter()
            .zip(gateways)
            .map(|(h, g)| {
                h.join().unwrap_or_else(|_| GatewayOutcome {
                    gateway: g.name.clone(),
                    result: Err(RuntimeError::Closed),
                    attempts: 0,
                    elapsed: Duration::ZERO,
                })
            })
            .collect()
    })
}

fn push_one(g: &Gateway, map_text: &str, policy: &PushPolicy) -> GatewayOutcome {
    let t0 = Instant::now();
    let mut backoff = policy.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = RuntimeClient::connect(&g.endpoint, policy.io_timeout)
            .and_then(|mut c| push_version(&mut c, &g.map, map_text));
        // A bad map or a map the gateway does not load will not fix itself by retrying now.
        let permanent = matches!(
            result,
            Err(RuntimeError::BadMap(_)
                | RuntimeError::NoSuchMap(_)
                | RuntimeError::LineTooLong(_))
        );
        if result.is_ok() || permanent || attempts >= policy.attempts.max(1) {
            return GatewayOutcome {
                gateway: g.name.clone(),
                result,
                attempts,
                elapsed: t0.elapsed(),
            };
        }
        std::thread::sleep(backoff);
        backoff = backoff.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            "unix:/run/haproxy/admin.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/haproxy/admin.sock".into())
        );
        assert_eq!(
            "/tmp/a.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            "tcp:10.0.0.5:9999".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("10.0.0.5:9999".into())
        );
        assert_eq!(
            "gw1.example:9999".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("gw1.example:9999".into())
        );
        assert!("admin.sock".parse::<Endpoint>().is_err());
        assert!("tcp:host:notaport".parse::<Endpoint>().is_err());
    }

    #[test]
    fn chunks_fit_and_keep_every_line_in_order() {
        let lines: Vec<String> = (0..2000)
            .map(|i| format!("R{i:036} 1,1000000000000000,{i},0"))
            .collect();
        let overhead = "add map @7 /etc/haproxy/suiftly-keys.map <<\n".len();
        let cs = chunks(lines.iter().map(|s| s.as_str()), overhead, CHUNK_BYTES).unwrap();
        assert!(cs.len() > 1);
        for c in &cs {
            assert!(
                overhead + c.len() < CHUNK_BYTES,
                "payload and its end line fit"
            );
            assert!(c.ends_with('\n'));
        }
        let joined: Vec<&str> = cs.iter().flat_map(|c| c.lines()).collect();
        assert_eq!(joined, lines.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert!(matches!(
            chunks(
                std::iter::once("x".repeat(CHUNK_BYTES).as_str()),
                10,
                CHUNK_BYTES
            ),
            Err(RuntimeError::LineTooLong(_))
        ));
    }
}
