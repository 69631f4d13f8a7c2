//! A relay between the ingestor and PostgreSQL (unix sockets) that can lose COMMIT replies.
//!
//! It forwards every byte, reading the protocol's message framing on the way (startup
//! packets, then a type byte and a length per message). When armed, the first COMMIT of a
//! transaction that moved the COPY writer's spool position (`UPDATE ingest_positions`) is
//! forwarded to the server, the server's reply is read and withheld, and once the server has
//! said `COMMIT` both connections are cut: the transaction is committed and the client never
//! learns it. The relay also watches what the server answers to that UPDATE on later
//! connections: `UPDATE 0` is the compare-and-set finding the position already moved.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    /// COMMITs still to cut.
    armed: AtomicU64,
    /// COMMITs the server confirmed whose reply the client never got.
    pub cut_after_commit: AtomicU64,
    /// Cut COMMITs the server answered with an error instead (nothing committed).
    pub cut_failed: AtomicU64,
    /// `UPDATE ingest_positions` answered `UPDATE 1` (the position moved).
    pub position_moved: AtomicU64,
    /// `UPDATE ingest_positions` answered `UPDATE 0` (the position was not where the batch
    /// starts: already committed, or a conflict).
    pub position_unmoved: AtomicU64,
    pub connections: AtomicU64,
}

pub struct PgProxy {
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl PgProxy {
    /// Listens at `<dir>/.s.PGSQL.<port>` (what libpq's `host=<dir> port=<port>` connects
    /// to) and relays to `upstream` (the server's socket file).
    pub fn start(dir: &Path, port: u16, upstream: PathBuf) -> Self {
        let path = dir.join(format!(".s.PGSQL.{port}"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (counters.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let server = UnixStream::connect(&upstream)
                            .unwrap_or_else(|e| panic!("{}: {e}", upstream.display()));
                        c.connections.fetch_add(1, Ordering::Relaxed);
                        let c = c.clone();
                        std::thread::spawn(move || relay(client, server, c));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("proxy accept: {e}"),
                }
            }
        });
        Self {
            counters,
            stop,
            thread: Some(thread),
            path,
        }
    }

    /// The next `n` position-moving COMMITs lose their reply.
    pub fn arm(&self, n: u64) {
        self.counters.armed.store(n, Ordering::SeqCst);
    }

    pub fn armed(&self) -> u64 {
        self.counters.armed.load(Ordering::SeqCst)
    }

    pub fn get(&self, c: fn(&Counters) -> &AtomicU64) -> u64 {
        c(&self.counters).load(Ordering::SeqCst)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Default)]
struct Conn {
    /// The transaction in progress parsed `UPDATE ingest_positions`.
    position_tx: bool,
    /// The server's replies are withheld, and the connection cut once it says COMMIT.
    swallow: bool,
}

/// One untyped startup packet (length includes itself).
fn read_startup(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = u32::from_be_bytes(len) as usize;
    let mut msg = len.to_vec();
    msg.resize(n, 0);
    s.read_exact(&mut msg[4..]).ok()?;
    Some(msg)
}

/// One typed message: (type, whole message bytes, body).
fn read_msg(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let n = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut msg = head.to_vec();
    msg.resize(1 + n, 0);
    s.read_exact(&mut msg[5..]).ok()?;
    Some((head[0], msg))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn relay(mut client: UnixStream, mut server: UnixStream, counters: Arc<Counters>) {
    // Startup: SSL/GSS requests get a one-byte answer, then the real startup packet.
    loop {
        let Some(msg) = read_startup(&mut client) else {
            return;
        };
        let code = msg
            .get(4..8)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
        if server.write_all(&msg).is_err() {
            return;
        }
        if matches!(code, Some(80_877_103 | 80_877_104)) {
            let mut b = [0u8; 1];
            if server.read_exact(&mut b).is_err() || client.write_all(&b).is_err() {
                return;
            }
            continue;
        }
        break;
    }
    let conn = Arc::new(Mutex::new(Conn::default()));
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (conn2, counters2) = (conn.clone(), counters.clone());
    // Server → client.
    let back = std::thread::spawn(move || {
        while let Some((t, msg)) = read_msg(&mut s2) {
            let st = conn2.lock().unwrap();
            if t == b'C' {
                let tag = cstr(&msg[5..]);
                if st.position_tx && tag.starts_with("UPDATE ") {
                    let c = if tag == "UPDATE 0" {
                        &counters2.position_unmoved
                    } else {
                        &counters2.position_moved
                    };
                    c.fetch_add(1, Ordering::SeqCst);
                }
                if st.swallow && tag == "COMMIT" {
                    counters2.cut_after_commit.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
            if st.swallow {
                if t == b'E' {
                    counters2.cut_failed.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                continue;
            }
            drop(st);
            if c2.write_all(&msg).is_err() {
                break;
            }
        }
        let _ = c2.shutdown(Shutdown::Both);
        let _ = s2.shutdown(Shutdown::Both);
    });
    // Client → server.
    while let Some((t, msg)) = read_msg(&mut client) {
        {
            let mut st = conn.lock().unwrap();
            match t {
                b'P' => {
                    // Parse: statement name, then the query text.
                    let body = &msg[5..];
                    let name_end = body.iter().position(|&c| c == 0).unwrap_or(0);
                    let query = cstr(&body[name_end + 1..]);
                    if query.contains("UPDATE ingest_positions") {
                        st.position_tx = true;
                    }
                }
                b'Q' => {
                    let q = cstr(&msg[5..]).trim().to_ascii_uppercase();
                    if q.starts_with("COMMIT") && st.position_tx {
                        let armed = counters
                            .armed
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if armed {
                            st.swallow = true;
                        }
                    }
                    if q.starts_with("COMMIT")
                        || q.starts_with("ROLLBACK")
                        || q.starts_with("BEGIN")
                    {
                        st.position_tx = false;
                    }
                }
                _ => {}
            }
        }
        if server.write_all(&msg).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
    let _ = back.join();
}
