//! Benchmark (not a test): generate and push a vault of 100,000 keys into a real HAProxy 2.6
//! running the shipped config. Prints the figures recorded in docs/PERFORMANCE.md.
//!
//! `cargo bench -p suiftly-vault --bench push` (`VAULT_BENCH_KEYS=N` to change the size).
//!
//! Measures: synthesis, build and atomic write of a version (bytes of map and CSV); HAProxy's
//! memory (`show info` pools and the process RSS) with an empty map, after loading the file,
//! at the peak of a push (old and new version both held, just before `commit map`) and after;
//! the time of a whole push until `show map` reports the new version with its entry count
//! (median of 5, each a different version); and the same for a first push into an empty map.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use suiftly_vault::runtime::{CHUNK_BYTES, Endpoint, RuntimeClient, push_version};
use suiftly_vault::{RateLimits, Secret, VaultFiles, build};

struct Haproxy(Child);
impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_haproxy(dir: &Path, map: &Path) -> (Haproxy, PathBuf) {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/haproxy/suiftly.cfg"
    ))
    .unwrap();
    let sock = dir.join("admin.sock");
    let cfg = shipped
        .replace("127.0.0.1:5514", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:8444", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:8445", &format!("127.0.0.1:{}", free_port()))
        .replace("/etc/haproxy/suiftly-keys.map", map.to_str().unwrap())
        .replace("/run/haproxy/admin.sock", sock.to_str().unwrap());
    let cfg_path = dir.join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let child = Command::new("/usr/sbin/haproxy")
        .args(["-db", "-f", cfg_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (apt-get install haproxy)");
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "haproxy did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (Haproxy(child), sock)
}

/// (`show info` PoolAlloc_MB, PoolUsed_MB, process RSS MiB)
fn memory(c: &mut RuntimeClient, pid: u32) -> (f64, f64, f64) {
    let info = c.command("show info").unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let rss_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap();
    (
        field("PoolAlloc_MB:"),
        field("PoolUsed_MB:"),
        rss_kb / 1024.0,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let n: usize = std::env::var("VAULT_BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let files = VaultFiles::new(tmp.path().join("vault"), 3);
    let limits = RateLimits::default();

    let t = Instant::now();
    let mut input = suiftly_vault::synth::synthetic(n, 42, &Secret::development());
    let synth = t.elapsed();
    let t = Instant::now();
    let v1 = build(&input, &limits).unwrap();
    let built = t.elapsed();
    let t = Instant::now();
    let w = files.write(&v1, 0).unwrap();
    let written = t.elapsed();
    let (map_bytes, csv_bytes) = match w {
        suiftly_vault::WriteOutcome::Written {
            map_bytes,
            csv_bytes,
            ..
        } => (map_bytes, csv_bytes),
        other => panic!("{other:?}"),
    };
    println!(
        "keys {n}: synthesize {:.0} ms, build {:.0} ms, write {:.0} ms; map {map_bytes} bytes, csv {csv_bytes} bytes ({} rows)",
        ms(synth),
        ms(built),
        ms(written),
        v1.csv_rows()
    );

    // --- HAProxy with an empty map: first push of 100k keys -------------------------------
    let empty = tmp.path().join("empty.map");
    std::fs::write(&empty, "").unwrap();
    {
        let (hp, sock) = start_haproxy(tmp.path(), &empty);
        let ep = Endpoint::Unix(sock);
        let mut c = RuntimeClient::connect(&ep, Duration::from_secs(30)).unwrap();
        let m0 = memory(&mut c, hp.0.id());
        let text = std::fs::read_to_string(files.map_path()).unwrap();
        let t = Instant::now();
        let a = push_version(&mut c, empty.to_str().unwrap(), &text).unwrap();
        let first = t.elapsed();
        let m1 = memory(&mut c, hp.0.id());
        println!(
            "first push into an empty map: {:.0} ms until show map reports version {} with {} entries; {} chunks, {} bytes sent (chunk limit {CHUNK_BYTES})",
            ms(first),
            a.haproxy_version,
            a.entries,
            a.chunks,
            a.bytes
        );
        println!(
            "memory empty map: pools {:.1}/{:.1} MB (alloc/used), RSS {:.1} MiB; after push: pools {:.1}/{:.1} MB, RSS {:.1} MiB",
            m0.0, m0.1, m0.2, m1.0, m1.1, m1.2
        );
    }

    // --- HAProxy started on the 100k file; replace it with new versions -------------------
    let t = Instant::now();
    let (hp, sock) = start_haproxy(tmp.path(), &files.map_path());
    let startup = t.elapsed();
    let ep = Endpoint::Unix(sock);
    let mut c = RuntimeClient::connect(&ep, Duration::from_secs(30)).unwrap();
    let loaded = memory(&mut c, hp.0.id());
    println!(
        "haproxy start on the {n}-key file: {:.0} ms; memory pools {:.1}/{:.1} MB, RSS {:.1} MiB",
        ms(startup),
        loaded.0,
        loaded.1,
        loaded.2
    );
    let map = files.map_path().to_str().unwrap().to_string();
    let mut pushes = Vec::new();
    let mut regen = Vec::new();
    for round in 0..5 {
        // 1% of the keys change state per version.
        for i in 0..n / 100 {
            let k = (round * 7919 + i * 101) % n;
            input.keys[k].revoked = !input.keys[k].revoked;
        }
        let t = Instant::now();
        let v = build(&input, &limits).unwrap();
        files.write(&v, 0).unwrap();
        let text = std::fs::read_to_string(files.map_path()).unwrap();
        regen.push(ms(t.elapsed()));
        let t = Instant::now();
        let a = push_version(&mut c, &map, &text).unwrap();
        pushes.push(ms(t.elapsed()));
        assert!(!a.already && a.entries == n as u64 + 1);
    }
    let after = memory(&mut c, hp.0.id());
    println!(
        "replace a {n}-key version (1% changed), 5 rounds: build+write median {:.0} ms; push until show map reports it median {:.0} ms (min {:.0}, max {:.0})",
        median(regen.clone()),
        median(pushes.clone()),
        pushes.iter().cloned().fold(f64::MAX, f64::min),
        pushes.iter().cloned().fold(0.0, f64::max)
    );

    // --- peak memory: both versions held just before the commit ----------------------------
    let text = std::fs::read_to_string(files.map_path()).unwrap();
    let ver = c.prepare_map(&map).unwrap();
    let overhead = format!("add map @{ver} {map} <<\n").len();
    let mut chunk = String::new();
    for line in suiftly_vault::content::map_lines(&text) {
        if overhead + chunk.len() + line.len() + 2 > CHUNK_BYTES {
            c.add_map_payload(ver, &map, &chunk).unwrap();
            chunk.clear();
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    c.add_map_payload(ver, &map, &chunk).unwrap();
    let peak = memory(&mut c, hp.0.id());
    c.commit_map(ver, &map).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let settled = memory(&mut c, hp.0.id());
    println!(
        "memory during a replace: loaded RSS {:.1} MiB, peak before commit {:.1} MiB (pools {:.1}/{:.1} MB), after commit {:.1} MiB (pools {:.1}/{:.1} MB), after 5 replaces {:.1} MiB",
        loaded.2, peak.2, peak.0, peak.1, settled.2, settled.0, settled.1, after.2
    );
}
