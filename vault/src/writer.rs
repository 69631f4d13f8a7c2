//! Putting a version on disk so that a reader (HAProxy at start or reload, an rsync, an
//! operator) only ever sees a complete version, whatever moment the writer dies at.
//!
//! Per file: write a temporary file in the same directory → `fsync` → `rename` over the live
//! name → `fsync` the directory. `rename(2)` within one filesystem is atomic, so the live name
//! points at the old inode or at the new, complete one; the two `fsync`s make the content and
//! then the new name durable in that order, so a power cut cannot leave the name pointing at
//! unwritten blocks.
//!
//! Layout of the directory:
//!
//! ```text
//! <dir>/suiftly-keys.map             live map (HAProxy's `map(...)` path)
//! <dir>/ma_vault.csv                 live MA_VAULT CSV
//! <dir>/versions/suiftly-keys.<seq>.map, ma_vault.<seq>.csv   the last `keep` versions
//! ```
//!
//! Each version is written once into `versions/` and hard-linked to the live name (no second
//! copy of the bytes). The CSV goes live before the map, and the map's header is what says
//! which version is current: after a crash between the two renames the CSV may be one
//! version ahead of the map, each file complete; the next write repeats the version, or, when
//! its content is the live map's, puts that version's CSV back live.
//!
//! [`WriteStep`] names each step of this protocol; [`VaultFiles::with_step_hook`] lets a crash
//! test stop the writer at one of them (`vault/tests/crash.rs`, through `suiftly-vault synth
//! --pause-at`).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::content::{MapFileError, MapHeader, VaultContent};

/// Prefix of temporary files; stale ones (from a writer killed mid-write) are removed by the
/// next writer.
const TMP_PREFIX: &str = ".suiftly-vault-tmp-";
/// A temporary file older than this is stale (no write takes this long).
const STALE_TMP: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("vault io on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("live vault map {path} is not a valid vault map: {source}")]
    LiveMap {
        path: PathBuf,
        #[source]
        source: MapFileError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A point inside [`VaultFiles::write`], in the order they are reached. Each is reported to a
/// step hook (see [`VaultFiles::with_step_hook`]) right after it is done, before the next
/// starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteStep {
    /// The CSV's bytes are in a temporary file in `versions/`, not yet fsynced.
    CsvTempWritten,
    /// That temporary file is fsynced, not yet renamed.
    CsvTempSynced,
    /// It is renamed to `versions/<csv>.<seq>.csv`; `versions/` not yet fsynced.
    CsvVersionRenamed,
    /// The map's bytes are in a temporary file in `versions/`, not yet fsynced.
    MapTempWritten,
    /// That temporary file is fsynced, not yet renamed.
    MapTempSynced,
    /// It is renamed to `versions/<map>.<seq>.map`.
    MapVersionRenamed,
    /// `versions/` is fsynced: both version files are durable, nothing is live yet.
    VersionsDirSynced,
    /// The CSV version is hard-linked under a temporary name next to the live CSV.
    CsvLinked,
    /// The live CSV is the new version; the live map is still the old one.
    CsvLive,
    /// The map version is hard-linked under a temporary name next to the live map.
    MapLinked,
    /// The live map is the new version; the directory is not yet fsynced.
    MapLive,
    /// The directory is fsynced (the version is durable); old versions not yet pruned.
    DirSynced,
}

impl WriteStep {
    pub const ALL: [WriteStep; 12] = [
        WriteStep::CsvTempWritten,
        WriteStep::CsvTempSynced,
        WriteStep::CsvVersionRenamed,
        WriteStep::MapTempWritten,
        WriteStep::MapTempSynced,
        WriteStep::MapVersionRenamed,
        WriteStep::VersionsDirSynced,
        WriteStep::CsvLinked,
        WriteStep::CsvLive,
        WriteStep::MapLinked,
        WriteStep::MapLive,
        WriteStep::DirSynced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WriteStep::CsvTempWritten => "csv-temp-written",
            WriteStep::CsvTempSynced => "csv-temp-synced",
            WriteStep::CsvVersionRenamed => "csv-version-renamed",
            WriteStep::MapTempWritten => "map-temp-written",
            WriteStep::MapTempSynced => "map-temp-synced",
            WriteStep::MapVersionRenamed => "map-version-renamed",
            WriteStep::VersionsDirSynced => "versions-dir-synced",
            WriteStep::CsvLinked => "csv-linked",
            WriteStep::CsvLive => "csv-live",
            WriteStep::MapLinked => "map-linked",
            WriteStep::MapLive => "map-live",
            WriteStep::DirSynced => "dir-synced",
        }
    }

    pub fn parse(name: &str) -> Option<WriteStep> {
        WriteStep::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Called with each [`WriteStep`] reached and the sequence number being written.
pub type StepHook = fn(WriteStep, u64);

/// What [`VaultFiles::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The live map already has this content hash: nothing was written.
    Unchanged { seq: u64 },
    /// A new version is live.
    Written {
        seq: u64,
        map_bytes: u64,
        csv_bytes: u64,
    },
}

impl WriteOutcome {
    pub fn seq(&self) -> u64 {
        match self {
            WriteOutcome::Unchanged { seq } | WriteOutcome::Written { seq, .. } => *seq,
        }
    }
}

/// The vault directory of one writer.
#[derive(Debug, Clone)]
pub struct VaultFiles {
    dir: PathBuf,
    map_name: String,
    csv_name: String,
    keep: usize,
    hook: Option<StepHook>,
}

impl VaultFiles {
    /// `keep` versions stay in `versions/` (at least 1: the live one).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> VaultFiles {
        VaultFiles {
            dir: dir.into(),
            map_name: "suiftly-keys.map".into(),
            csv_name: "ma_vault.csv".into(),
            keep: keep.max(1),
            hook: None,
        }
    }

    /// Test hook for crash tests: `hook` is called at every [`WriteStep`] of every write, and
    /// may block (the crash test's writer stops there and is SIGKILLed). Only the
    /// `suiftly-vault synth --pause-at` command (and unit tests) set one; without it a step
    /// costs one `Option` check, nothing else (no environment lookup, no feature flag).
    pub fn with_step_hook(mut self, hook: StepHook) -> VaultFiles {
        self.hook = Some(hook);
        self
    }

    fn step(&self, step: WriteStep, seq: u64) {
        if let Some(hook) = self.hook {
            hook(step, seq);
        }
    }

    /// Overrides the live file names (the map's must match the HAProxy config).
    pub fn with_names(mut self, map_name: &str, csv_name: &str) -> VaultFiles {
        self.map_name = map_name.into();
        self.csv_name = csv_name.into();
        self
    }

    pub fn map_path(&self) -> PathBuf {
        self.dir.join(&self.map_name)
    }

    pub fn csv_path(&self) -> PathBuf {
        self.dir.join(&self.csv_name)
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join("versions")
    }

    fn version_name(name: &str, seq: u64) -> String {
        match name.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.{seq:010}.{ext}"),
            None => format!("{name}.{seq:010}"),
        }
    }

    /// The live map's header, `None` when there is no live map yet. Reads only the header
    /// (the rename makes the file complete; [`MapHeader::verify`] checks the body too).
    pub fn current(&self) -> Result<Option<MapHeader>, WriteError> {
        let path = self.map_path();
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut head = Vec::with_capacity(512);
        (&mut f)
            .take(1024)
            .read_to_end(&mut head)
            .map_err(io_err(&path))?;
        let text = String::from_utf8_lossy(&head);
        // Only the two header lines are needed; drop a partial third.
        let cut = text
            .match_indices('\n')
            .nth(1)
            .map_or(text.len(), |(i, _)| i + 1);
        MapHeader::parse(&text[..cut])
            .map(|(h, _)| Some(h))
            .map_err(|source| WriteError::LiveMap { path, source })
    }

    /// Writes `content` as the next version unless the live map already has its hash.
    /// The sequence number is the live one + 1, and at least `min_seq` (the caller passes
    /// what PostgreSQL has recorded, so a wiped directory does not reuse numbers).
    pub fn write(&self, content: &VaultContent, min_seq: u64) -> Result<WriteOutcome, WriteError> {
        let versions = self.versions_dir();
        fs::create_dir_all(&versions).map_err(io_err(&versions))?;
        // A live file that is not a vault map (a hand-made example, a stray copy) is replaced:
        // the vault stage owns this path.
        let current = match self.current() {
            Err(WriteError::LiveMap { .. }) => None,
            other => other?,
        };
        if let Some(h) = &current
            && h.hash == content.hash_hex()
        {
            self.restore_csv(content, h.seq)?;
            return Ok(WriteOutcome::Unchanged { seq: h.seq });
        }
        self.remove_stale_tmp();
        let seq = current.map_or(1, |h| h.seq + 1).max(min_seq).max(1);
        let map = content.render_map(seq);

        let csv_version = versions.join(Self::version_name(&self.csv_name, seq));
        let map_version = versions.join(Self::version_name(&self.map_name, seq));
        use WriteStep::*;
        let step = |s| self.step(s, seq);
        write_atomic(&versions, &csv_version, content.csv().as_bytes(), |i| {
            step([CsvTempWritten, CsvTempSynced, CsvVersionRenamed][i])
        })?;
        write_atomic(&versions, &map_version, map.as_bytes(), |i| {
            step([MapTempWritten, MapTempSynced, MapVersionRenamed][i])
        })?;
        sync_dir(&versions)?;
        step(VersionsDirSynced);
        publish(
            &self.dir,
            &csv_version,
            &self.csv_path(),
            content.csv().as_bytes(),
            |i| step([CsvLinked, CsvLive][i]),
        )?;
        publish(
            &self.dir,
            &map_version,
            &self.map_path(),
            map.as_bytes(),
            |i| step([MapLinked, MapLive][i]),
        )?;
        sync_dir(&self.dir)?;
        step(DirSynced);
        self.prune(seq);
        Ok(WriteOutcome::Written {
            seq,
            map_bytes: map.len() as u64,
            csv_bytes: content.csv().len() as u64,
        })
    }

    /// After a crash between the CSV's rename and the map's, the live CSV is one version
    /// ahead of the live map. When the next write finds the map's content unchanged it writes
    /// no new version, so it puts the map's version of the CSV back live here. Normally the
    /// live CSV is a hard link of `versions/<csv>.<seq>.csv`: two `stat`s, nothing read
    /// (where hard links are not supported, the live CSV is read and compared).
    fn restore_csv(&self, content: &VaultContent, seq: u64) -> Result<(), WriteError> {
        use std::os::unix::fs::MetadataExt;
        let live = self.csv_path();
        let version = self
            .versions_dir()
            .join(Self::version_name(&self.csv_name, seq));
        let same_inode = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same_inode(&live, &version)
            || fs::read(&live).is_ok_and(|b| b == content.csv().as_bytes())
        {
            return Ok(());
        }
        let versions = self.versions_dir();
        write_atomic(&versions, &version, content.csv().as_bytes(), |_| {})?;
        sync_dir(&versions)?;
        publish(&self.dir, &version, &live, content.csv().as_bytes(), |_| {})?;
        sync_dir(&self.dir)
    }

    /// Keeps versions `seq - keep + 1 ..= seq`; failures only leave extra files.
    fn prune(&self, seq: u64) {
        let Ok(rd) = fs::read_dir(self.versions_dir()) else {
            return;
        };
        let oldest_kept = seq.saturating_sub(self.keep as u64 - 1);
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let v = name
                .split('.')
                .find(|p| p.len() == 10 && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u64>().ok());
            if let Some(v) = v
                && v < oldest_kept
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn remove_stale_tmp(&self) {
        for dir in [self.dir.clone(), self.versions_dir()] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let stale = e.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                    && e.metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > STALE_TMP);
                if stale {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Version numbers present in `versions/`, ascending (for operators and tests).
    pub fn versions(&self) -> Vec<u64> {
        let mut out: Vec<u64> = fs::read_dir(self.versions_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rest = name.strip_prefix(
                    self.map_name
                        .rsplit_once('.')
                        .map_or(&*self.map_name, |x| x.0),
                )?;
                rest.split('.').nth(1)?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// temp file in `dir` → write → fsync → rename to `dest` (the caller fsyncs `dir`);
/// `step(0)`, `step(1)`, `step(2)` after each of the three.
fn write_atomic(
    dir: &Path,
    dest: &Path,
    bytes: &[u8],
    mut step: impl FnMut(usize),
) -> Result<(), WriteError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    step(0);
    tmp.as_file().sync_all().map_err(io_err(dest))?;
    step(1);
    tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    step(2);
    Ok(())
}

/// Makes `version` (already durable) the live `dest`: a hard link under a temporary name in
/// `dir`, renamed over `dest`. Falls back to writing the bytes where links are not supported.
/// `step(0)` once the temporary name exists, `step(1)` once `dest` is the new version.
fn publish(
    dir: &Path,
    version: &Path,
    dest: &Path,
    bytes: &[u8],
    mut step: impl FnMut(usize),
) -> Result<(), WriteError> {
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        std::process::id(),
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("live")
    ));
    let _ = fs::remove_file(&tmp);
    match fs::hard_link(version, &tmp) {
        Ok(()) => {
            step(0);
            fs::rename(&tmp, dest).map_err(io_err(dest))?;
            step(1);
            Ok(())
        }
        Err(_) => write_atomic(dir, dest, bytes, |i| match i {
            1 => step(0),
            2 => step(1),
            _ => {}
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{KeyRecord, RateLimits, ServiceRecord, VaultInput, build};
    use crate::word::Tier;

    fn content(n: usize, revoked: usize) -> VaultContent {
        let mut input = VaultInput::default();
        input.services.push(ServiceRecord {
            customer_id: 9,
            service_type: 2,
            tier: Tier::Pro,
            burst: true,
            enabled: true,
            suspended: None,
        });
        for i in 0..n {
            input.keys.push(KeyRecord {
                customer_id: 9,
                service_type: 2,
                key: format!("R{i:036}"),
                encrypted_key: vec![i as u8; 8],
                fingerprint: i as i32,
                metadata: 0,
                revoked: i < revoked,
            });
        }
        build(&input, &RateLimits::default()).unwrap()
    }

    #[test]
    fn write_skip_unchanged_and_keep_n() {
        let dir = tempfile::tempdir().unwrap();
        let files = VaultFiles::new(dir.path(), 3);
        assert_eq!(files.current().unwrap(), None);
        let c1 = content(5, 0);
        let w = files.write(&c1, 0).unwrap();
        assert!(matches!(w, WriteOutcome::Written { seq: 1, .. }), "{w:?}");
        let mtime = fs::metadata(files.map_path()).unwrap().modified().unwrap();
        // unchanged input writes nothing
        assert_eq!(
            files.write(&c1, 0).unwrap(),
            WriteOutcome::Unchanged { seq: 1 }
        );
        assert_eq!(
            fs::metadata(files.map_path()).unwrap().modified().unwrap(),
            mtime
        );
        for r in 1..=5 {
            let w = files.write(&content(5, r), 0).unwrap();
            assert_eq!(w.seq(), 1 + r as u64);
        }
        assert_eq!(files.versions(), vec![4, 5, 6]);
        let live = fs::read_to_string(files.map_path()).unwrap();
        let h = MapHeader::verify(&live).unwrap();
        assert_eq!((h.seq, h.hash.clone()), (6, content(5, 5).hash_hex()));
        assert_eq!(
            fs::read_to_string(files.csv_path()).unwrap(),
            content(5, 5).csv()
        );
        // the live files are the version files (hard links)
        assert_eq!(
            fs::read_to_string(dir.path().join("versions/suiftly-keys.0000000006.map")).unwrap(),
            live
        );
        // min_seq from the database wins when ahead
        assert_eq!(files.write(&content(6, 0), 100).unwrap().seq(), 100);
        // no temporary files left
        for d in [dir.path().to_path_buf(), dir.path().join("versions")] {
            for e in fs::read_dir(d).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                assert!(!name.starts_with(TMP_PREFIX), "{name}");
            }
        }
    }

    /// A writer that dies between the CSV's rename and the map's leaves the CSV one version
    /// ahead; a later write of the map's own content (unchanged: no new version) puts the
    /// map's CSV back live. The "crash" is a panic from the step hook.
    #[test]
    fn unchanged_write_after_a_crash_between_the_renames_restores_the_csv() {
        fn die_when_csv_live(step: WriteStep, _seq: u64) {
            if step == WriteStep::CsvLive {
                panic!("simulated crash at {}", step.name());
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let files = VaultFiles::new(dir.path(), 3);
        let (c1, c2) = (content(4, 0), content(4, 2));
        assert_eq!(files.write(&c1, 0).unwrap().seq(), 1);
        let crashing = files.clone().with_step_hook(die_when_csv_live);
        let r = std::panic::catch_unwind(|| crashing.write(&c2, 0));
        assert!(r.is_err());
        assert_eq!(files.current().unwrap().unwrap().seq, 1);
        assert_eq!(fs::read_to_string(files.csv_path()).unwrap(), c2.csv());
        assert_eq!(
            files.write(&c1, 0).unwrap(),
            WriteOutcome::Unchanged { seq: 1 }
        );
        assert_eq!(fs::read_to_string(files.csv_path()).unwrap(), c1.csv());
        // and it is the version file again (a hard link), so the next check is two stats
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&files.csv_path()),
            ino(&dir.path().join("versions/ma_vault.0000000001.csv"))
        );
        // a changed write after the crash repeats nothing and goes on from the live map
        assert_eq!(files.write(&c2, 0).unwrap().seq(), 2);
        assert_eq!(fs::read_to_string(files.csv_path()).unwrap(), c2.csv());
    }

    #[test]
    fn every_step_is_reached_once_in_order() {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<(WriteStep, u64)>> = Mutex::new(Vec::new());
        fn record(step: WriteStep, seq: u64) {
            SEEN.lock().unwrap().push((step, seq));
        }
        let dir = tempfile::tempdir().unwrap();
        let files = VaultFiles::new(dir.path(), 2).with_step_hook(record);
        files.write(&content(2, 0), 0).unwrap();
        files.write(&content(2, 0), 0).unwrap(); // unchanged: no step
        let seen = SEEN.lock().unwrap().clone();
        let want: Vec<(WriteStep, u64)> = WriteStep::ALL.iter().map(|&s| (s, 1)).collect();
        assert_eq!(seen, want);
        for s in WriteStep::ALL {
            assert_eq!(WriteStep::parse(s.name()), Some(s));
        }
    }

    #[test]
    fn a_live_file_that_is_not_a_vault_map_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let files = VaultFiles::new(dir.path(), 2);
        fs::write(files.map_path(), "R123 1,2,3,4\n").unwrap();
        assert!(matches!(files.current(), Err(WriteError::LiveMap { .. })));
        assert_eq!(files.write(&content(1, 0), 0).unwrap().seq(), 1);
        assert_eq!(files.current().unwrap().unwrap().seq, 1);
    }
}
