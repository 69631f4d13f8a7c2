//! A writer SIGKILLed mid-write never leaves a partial or missing vault: after every kill the
//! live map verifies as one complete version and the live CSV is byte for byte the CSV of that
//! version or of the one after it (the CSV goes live first); while the writer runs, a
//! concurrent reader never sees anything else either.
//!
//! Two tests. `sigkill_inside_every_write_step...` is deterministic: the writer (`suiftly-vault
//! synth --pause-at STEP`, the `VaultFiles::with_step_hook` test hook) stops inside its write at
//! each step of the protocol in turn (temp written, fsynced, renamed, directory fsynced, linked,
//! live...), says so on stdout, and only then is SIGKILLed: every kill provably lands inside a
//! write, at a known step, and the files are checked against what that step must leave.
//! `sigkill_at_random_points...` kills a free-running writer after random delays (the kills
//! land wherever they land; they are counted, not required to hit a write).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use suiftly_vault::{MapHeader, VaultFiles, WriteStep};

const KILLS: u32 = 30;
/// Rounds over every step of the deterministic test (12 steps each), and its vault size (the
/// steps, not the size, are what it is about).
const STEP_ROUNDS: u32 = 2;
const KEYS: u32 = 1000;
/// The writer's temporary-file prefix (`writer::TMP_PREFIX`).
const TMP_PREFIX: &str = ".suiftly-vault-tmp-";

/// xorshift, seeded from the clock and printed, so a failure can be replayed with
/// `CRASH_SEED=<n>`.
fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

fn writer(dir: &Path, versions: u64, seed: u64) -> Command {
    writer_of(dir, versions, seed, 5000)
}

fn writer_of(dir: &Path, versions: u64, seed: u64, keys: u32) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suiftly-vault"));
    c.args([
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--keys",
        &keys.to_string(),
        "--seed",
        &seed.to_string(),
        "--versions",
        &versions.to_string(),
        "--keep",
        "3",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    c
}

fn names(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn tmp_count(d: &Path) -> usize {
    names(d)
        .iter()
        .filter(|n| n.starts_with(TMP_PREFIX))
        .count()
}

fn tmp_files(dir: &Path) -> usize {
    tmp_count(dir) + tmp_count(&dir.join("versions"))
}

/// Whether a kill left traces of an unfinished write: a temporary file more than the
/// `tmp_before` earlier kills left (stale ones stay for 10 minutes), or a version file newer
/// than the live map.
fn interrupted_a_write(dir: &Path, live_seq: u64, tmp_before: usize) -> bool {
    let tmp = tmp_files(dir) > tmp_before;
    let ahead = names(&dir.join("versions")).iter().any(|n| {
        n.split('.')
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s > live_seq)
    });
    tmp || ahead
}

fn version_file(dir: &Path, name: &str, seq: u64, ext: &str) -> PathBuf {
    dir.join(format!("versions/{name}.{seq:010}.{ext}"))
}

/// The live files are one complete version: map verified, CSV = that version's or the next's.
fn check_consistent(files: &VaultFiles, dir: &Path) -> u64 {
    let map = std::fs::read_to_string(files.map_path()).expect("live map exists");
    let h = MapHeader::verify(&map).unwrap_or_else(|e| panic!("live map incomplete: {e}"));
    let csv = std::fs::read(files.csv_path()).expect("live csv exists");
    let candidates: Vec<Vec<u8>> = [h.seq, h.seq + 1]
        .iter()
        .filter_map(|s| std::fs::read(version_file(dir, "ma_vault", *s, "csv")).ok())
        .collect();
    assert!(
        candidates.contains(&csv),
        "live csv ({} bytes) is neither version {} nor {}",
        csv.len(),
        h.seq,
        h.seq + 1
    );
    h.seq
}

/// After a completed write the two live files are the same version, exactly.
fn check_complete(files: &VaultFiles, dir: &Path) -> u64 {
    let seq = check_consistent(files, dir);
    assert_eq!(
        std::fs::read(files.csv_path()).unwrap(),
        std::fs::read(version_file(dir, "ma_vault", seq, "csv")).unwrap(),
        "after a completed write the live csv is version {seq}'s"
    );
    seq
}

fn live_seq(files: &VaultFiles) -> u64 {
    files.current().unwrap().expect("a live map").seq
}

/// A thread polling the live map the whole time: it must always exist and verify.
struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl Reader {
    fn start(files: &VaultFiles) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, reads, path) = (stop.clone(), reads.clone(), files.map_path());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let text = std::fs::read_to_string(&path).expect("live map never missing");
                    MapHeader::verify(&text)
                        .unwrap_or_else(|e| panic!("reader saw an incomplete map: {e}"));
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Reader {
            stop,
            reads,
            handle,
        }
    }

    /// Stops the reader; the number of verified reads.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("reader never saw a partial map");
        let n = self.reads.load(Ordering::Relaxed);
        assert!(n > 0);
        n
    }
}

/// The child's stdout lines, through a thread so waiting for one has a bound.
fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

/// What the directory holds at a moment, to compare with what a step must leave.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    live_map_seq: u64,
    /// The version whose CSV the live CSV is (by bytes).
    live_csv_of: Option<u64>,
    csv_version_exists: bool,
    map_version_exists: bool,
    tmp_in_versions: usize,
    tmp_in_dir: usize,
}

fn snapshot(files: &VaultFiles, dir: &Path, base: u64, seq: u64) -> Snapshot {
    let csv = std::fs::read(files.csv_path()).unwrap();
    Snapshot {
        live_map_seq: live_seq(files),
        live_csv_of: [base, seq].into_iter().find(|&s| {
            std::fs::read(version_file(dir, "ma_vault", s, "csv")).ok() == Some(csv.clone())
        }),
        csv_version_exists: version_file(dir, "ma_vault", seq, "csv").exists(),
        map_version_exists: version_file(dir, "suiftly-keys", seq, "map").exists(),
        tmp_in_versions: tmp_count(&dir.join("versions")),
        tmp_in_dir: tmp_count(dir),
    }
}

#[test]
fn sigkill_inside_every_write_step_never_leaves_a_partial_or_missing_vault() {
    use WriteStep::*;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let files = VaultFiles::new(&dir, 3);
    assert!(
        writer_of(&dir, 1, 1, KEYS)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    check_complete(&files, &dir);
    let reader = Reader::start(&files);
    let at = |s: WriteStep| WriteStep::ALL.iter().position(|&x| x == s).unwrap();
    let mut kills = 0;
    for round in 0..STEP_ROUNDS {
        for step in WriteStep::ALL {
            // A completed write of the seed's first content: whatever the last kill left, the
            // two live files are one version again (a new one, or the map's own restored).
            assert!(
                writer_of(&dir, 1, 1, KEYS)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            );
            let base = check_complete(&files, &dir);
            let (tv, td) = (tmp_count(&dir.join("versions")), tmp_count(&dir));
            // A kill before the map went live leaves the version files it had renamed; the
            // next attempt writes the same number again (same content, too).
            let seq = base + 1;
            let csv_before = version_file(&dir, "ma_vault", seq, "csv").exists();
            let map_before = version_file(&dir, "suiftly-keys", seq, "map").exists();

            // The next content, stopped inside its write at `step`.
            let mut child = writer_of(&dir, 0, 1, KEYS)
                .args(["--pause-at", step.name()])
                .spawn()
                .unwrap();
            let rx = lines(&mut child);
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("{}: the writer did not pause: {e}", step.name()));
            assert_eq!(line, format!("paused step={} seq={seq}", step.name()));
            let i = at(step);
            let want = Snapshot {
                live_map_seq: if i >= at(MapLive) { seq } else { base },
                live_csv_of: Some(if i >= at(CsvLive) { seq } else { base }),
                csv_version_exists: csv_before || i >= at(CsvVersionRenamed),
                map_version_exists: map_before || i >= at(MapVersionRenamed),
                tmp_in_versions: tv
                    + usize::from(matches!(
                        step,
                        CsvTempWritten | CsvTempSynced | MapTempWritten | MapTempSynced
                    )),
                tmp_in_dir: td + usize::from(matches!(step, CsvLinked | MapLinked)),
            };
            // What a reader sees while the writer is stopped there...
            assert_eq!(
                snapshot(&files, &dir, base, seq),
                want,
                "paused at {}",
                step.name()
            );
            check_consistent(&files, &dir);
            // ...and after it is killed there: the same files, each complete.
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            assert_eq!(
                snapshot(&files, &dir, base, seq),
                want,
                "killed at {}",
                step.name()
            );
            let live = check_consistent(&files, &dir);
            eprintln!(
                "round {round} {:>20}: killed writing {seq}, live map {live}, csv of {:?}",
                step.name(),
                want.live_csv_of.unwrap()
            );
        }
    }
    // A writer after all those kills completes and leaves the two files one version.
    assert!(
        writer_of(&dir, 1, 1, KEYS)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let last = check_complete(&files, &dir);
    let reads = reader.finish();
    eprintln!(
        "{kills} kills, each inside a write at a known step; last version {last}, {reads} verified reads"
    );
}

#[test]
fn sigkill_at_random_points_never_leaves_a_partial_or_missing_vault() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let files = VaultFiles::new(&dir, 3);
    // One complete version first: from then on a vault must always exist.
    let st = writer(&dir, 1, 1).stdout(Stdio::null()).status().unwrap();
    assert!(st.success());
    let first = check_consistent(&files, &dir);

    // A reader polling the live map the whole time.
    let reader = Reader::start(&files);

    let mut last = first;
    let mut advanced = 0;
    let mut mid_write = 0;
    for i in 0..KILLS {
        let tmp_before = tmp_files(&dir);
        let mut child = writer(&dir, 0, 1).spawn().unwrap();
        // Wait for the child's first version (it synthesizes the keys first), then kill it
        // at a random point of its build → write loop.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(line.starts_with("seq="), "{line}");
        std::thread::sleep(Duration::from_micros(next() % 300_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seq = check_consistent(&files, &dir);
        if interrupted_a_write(&dir, seq, tmp_before) {
            mid_write += 1;
        }
        assert!(
            seq >= last,
            "kill {i}: version went back from {last} to {seq}"
        );
        if seq > last {
            advanced += 1;
        }
        last = seq;
    }
    let reads = reader.finish();
    eprintln!(
        "{KILLS} kills ({mid_write} visibly inside a write), versions {first}..={last}, \
         advanced after {advanced} kills, {reads} verified reads"
    );
    // Each kill comes after the child printed a version it wrote, so the version advanced.
    // Whether a random kill lands inside a write depends on the machine (0–2 in 30 on the
    // shared 2-core VM, counted by new temporary files or versions ahead of the live map):
    // the deterministic test above covers every step.
    assert!(advanced > 0, "the writer got to write between kills");
    // The next writer after all those kills continues cleanly and leaves no temp files behind
    // once they are stale (here: only the ones of this last run can exist, and it completed).
    assert!(
        writer(&dir, 1, 1)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let final_seq = check_consistent(&files, &dir);
    assert!(final_seq >= last);
    assert!(files.versions().len() <= 3 + 1, "{:?}", files.versions());
}
