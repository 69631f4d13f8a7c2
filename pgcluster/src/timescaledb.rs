//! TimescaleDB: is it installed for the server binaries in use, preloading it, and the storage
//! mode of test clusters.
//!
//! TimescaleDB is a PostgreSQL extension that works only when the server loads its library at
//! start (`shared_preload_libraries = 'timescaledb'`); `CREATE EXTENSION` alone fails. So the
//! choice is made here, before the server starts:
//!
//! - [`installed`] looks for the extension's control file and loader library in the
//!   directories of the binaries [`PgCluster`] would run (`pg_config` next to them).
//! - [`ClusterOptions::preload_timescaledb`] adds the two settings (telemetry off: these
//!   machines have no network, and an ingest database has no business phoning home).
//! - [`PgCluster::start_preferring_timescaledb`] is the embedded default's start: preload when
//!   installed; when the library is installed but the server cannot load it (a build for
//!   another minor release, say), start without it and report why, instead of failing.
//! - Temporary clusters follow [`TEST_STORAGE_ENV`]: the project's tests run a second time in
//!   CI with `SUIFTLY_TEST_STORAGE=timescaledb`, the same tests against a hypertable.
//!
//! Whether a database then *uses* a hypertable is the schema's decision (migration V1 creates
//! one when the library is preloaded), not this crate's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{ClusterOptions, Error, PgCluster, find_bins};

/// Storage mode of temporary clusters: `native` (or unset) starts plain PostgreSQL,
/// `timescaledb` preloads TimescaleDB (an error when it is not installed: the test run asked
/// for it, so it must not quietly test the other mode).
pub const TEST_STORAGE_ENV: &str = "SUIFTLY_TEST_STORAGE";

/// The installed extension, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// `default_version` of `timescaledb.control`, e.g. `2.28.3`.
    pub version: String,
    /// The loader library the server preloads (`<pkglibdir>/timescaledb.so`).
    pub library: PathBuf,
}

/// What the embedded default's start did about TimescaleDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The server preloads TimescaleDB.
    Preloaded { version: String },
    /// No TimescaleDB for these binaries: plain PostgreSQL.
    NotInstalled,
    /// Installed, but the server failed to start with it; started without it. `reason` is the
    /// server's own message (e.g. an undefined symbol: a build for another minor release).
    Unloadable { version: String, reason: String },
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Preloaded { version } => write!(f, "timescaledb {version} preloaded"),
            Status::NotInstalled => write!(f, "timescaledb not installed"),
            Status::Unloadable { version, reason } => write!(
                f,
                "timescaledb {version} installed but the server cannot load it ({reason})"
            ),
        }
    }
}

/// Errors of the TimescaleDB choice (wrapped in [`Error::Timescaledb`]).
#[derive(thiserror::Error, Debug)]
pub enum TimescaledbError {
    #[error(
        "{TEST_STORAGE_ENV}=timescaledb, but timescaledb is not installed for the postgresql binaries in {} (looked for {}); install it (README, \"TimescaleDB\") or run the tests without {TEST_STORAGE_ENV}",
        bin_dir.display(), control.display()
    )]
    NotInstalled { bin_dir: PathBuf, control: PathBuf },
    #[error("{TEST_STORAGE_ENV}={value:?} is not a storage mode; use `native` or `timescaledb`")]
    UnknownTestStorage { value: String },
}

impl ClusterOptions {
    /// Preload TimescaleDB (appended to any `shared_preload_libraries` already set) with
    /// telemetry off. Starting fails when the library is missing: check [`installed`] first.
    pub fn preload_timescaledb(&mut self) -> &mut Self {
        match self
            .extra_settings
            .iter_mut()
            .find(|(k, _)| k == "shared_preload_libraries")
        {
            Some((_, v)) if v.split(',').any(|l| l.trim() == "timescaledb") => {}
            Some((_, v)) if !v.trim().is_empty() => v.push_str(",timescaledb"),
            Some((_, v)) => *v = "timescaledb".into(),
            None => self
                .extra_settings
                .push(("shared_preload_libraries".into(), "timescaledb".into())),
        }
        self.extra_settings
            .push(("timescaledb.telemetry_level".into(), "off".into()));
        self
    }

    /// True when these options preload TimescaleDB.
    pub fn preloads_timescaledb(&self) -> bool {
        self.extra_settings
            .iter()
            .any(|(k, v)| k == "shared_preload_libraries" && v.contains("timescaledb"))
    }
}

/// TimescaleDB as installed for the server binaries [`PgCluster`] uses (`PG_BIN_DIR`,
/// `pg_config`, `/usr/lib/postgresql/*`), or `None`. Installed means: the control file in the
/// extension directory and the loader library in the package library directory, both as
/// reported by the `pg_config` next to those binaries (Debian's layout when there is none).
pub fn installed() -> Result<Option<Installed>, Error> {
    let bins = find_bins()?;
    let (libdir, sharedir) = install_dirs(&bins.dir, &bins.major);
    let control = sharedir.join("extension/timescaledb.control");
    let library = libdir.join("timescaledb.so");
    let Ok(text) = fs::read_to_string(&control) else {
        return Ok(None);
    };
    if !library.is_file() {
        return Ok(None);
    }
    Ok(Some(Installed {
        version: control_version(&text).unwrap_or_else(|| "?".into()),
        library,
    }))
}

/// `default_version = '2.28.3'` from a control file.
fn control_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "default_version").then(|| v.trim().trim_matches('\'').to_owned())
    })
}

/// (pkglibdir, sharedir) of the installation whose binaries are in `bin_dir`.
fn install_dirs(bin_dir: &Path, major: &str) -> (PathBuf, PathBuf) {
    let pg_config = bin_dir.join("pg_config");
    if pg_config.is_file()
        && let Ok(out) = Command::new(&pg_config)
            .args(["--pkglibdir", "--sharedir"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().map(|l| PathBuf::from(l.trim()));
        if let (Some(lib), Some(share)) = (lines.next(), lines.next()) {
            return (lib, share);
        }
    }
    // Debian: /usr/lib/postgresql/<major>/{bin,lib}, /usr/share/postgresql/<major>.
    let lib = bin_dir.parent().unwrap_or(bin_dir).join("lib");
    let share = bin_dir
        .ancestors()
        .nth(4)
        .map(|usr| usr.join("share/postgresql").join(major))
        .unwrap_or_else(|| PathBuf::from("/usr/share/postgresql").join(major));
    (lib, share)
}

/// Applies [`TEST_STORAGE_ENV`] to a temporary cluster's options.
pub(crate) fn apply_test_storage(opts: &mut ClusterOptions) -> Result<(), Error> {
    let value = std::env::var(TEST_STORAGE_ENV).unwrap_or_default();
    if !wants_timescaledb(&value)? {
        return Ok(());
    }
    if installed()?.is_none() {
        let bins = find_bins()?;
        let (_, share) = install_dirs(&bins.dir, &bins.major);
        return Err(TimescaledbError::NotInstalled {
            bin_dir: bins.dir,
            control: share.join("extension/timescaledb.control"),
        }
        .into());
    }
    opts.preload_timescaledb();
    Ok(())
}

/// The value of [`TEST_STORAGE_ENV`]: does it ask for TimescaleDB?
fn wants_timescaledb(value: &str) -> Result<bool, TimescaledbError> {
    match value.trim() {
        "" | "native" => Ok(false),
        "timescaledb" => Ok(true),
        other => Err(TimescaledbError::UnknownTestStorage {
            value: other.to_owned(),
        }),
    }
}

/// The server log line that says why a start with TimescaleDB failed, if that is why.
fn timescaledb_failure(err: &Error) -> Option<String> {
    let Error::Start { log, .. } = err else {
        return None;
    };
    log.lines()
        .find(|l| l.contains("timescaledb") && (l.contains("FATAL") || l.contains("ERROR")))
        .map(|l| {
            // Drop the "2026-… UTC [pid] " prefix.
            l.split_once("FATAL:")
                .or_else(|| l.split_once("ERROR:"))
                .map_or(l, |(_, m)| m)
                .trim()
                .to_owned()
        })
}

impl PgCluster {
    /// [`PgCluster::start`] with TimescaleDB preloaded when it is installed. When it is
    /// installed but the server refuses to start with it, the cluster is started without it
    /// (logged as a warning) and the returned [`Status`] says why; a database that already
    /// holds a hypertable then fails at its own start-up check, with that reason at hand.
    pub fn start_preferring_timescaledb(
        opts: ClusterOptions,
    ) -> Result<(PgCluster, Status), Error> {
        let Some(found) = installed()? else {
            return Ok((PgCluster::start(opts)?, Status::NotInstalled));
        };
        let mut with = opts.clone();
        with.preload_timescaledb();
        match PgCluster::start(with) {
            Ok(pg) => Ok((
                pg,
                Status::Preloaded {
                    version: found.version,
                },
            )),
            Err(e) => {
                let Some(reason) = timescaledb_failure(&e) else {
                    return Err(e);
                };
                tracing::warn!(
                    version = %found.version,
                    %reason,
                    "pgcluster: the server cannot load timescaledb; starting without it"
                );
                let pg = PgCluster::start(opts)?;
                Ok((
                    pg,
                    Status::Unloadable {
                        version: found.version,
                        reason,
                    },
                ))
            }
        }
    }

    /// True when this cluster preloads TimescaleDB.
    pub fn preloads_timescaledb(&self) -> bool {
        self.opts.preloads_timescaledb()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_appends_once() {
        let mut o = ClusterOptions::new("/x");
        o.preload_timescaledb();
        assert!(o.preloads_timescaledb());
        assert_eq!(
            o.extra_settings[0],
            ("shared_preload_libraries".into(), "timescaledb".into())
        );
        let mut o = ClusterOptions::new("/x");
        o.extra_settings.push((
            "shared_preload_libraries".into(),
            "pg_stat_statements".into(),
        ));
        o.preload_timescaledb().preload_timescaledb();
        assert_eq!(o.extra_settings[0].1, "pg_stat_statements,timescaledb");
        assert!(!ClusterOptions::new("/x").preloads_timescaledb());
    }

    #[test]
    fn test_storage_values() {
        assert!(!wants_timescaledb("").unwrap());
        assert!(!wants_timescaledb("native").unwrap());
        assert!(wants_timescaledb("timescaledb").unwrap());
        let e = wants_timescaledb("hypertable").unwrap_err().to_string();
        assert!(e.contains("native") && e.contains("timescaledb"), "{e}");
    }

    #[test]
    fn control_file_version() {
        let text = "# timescaledb extension\ncomment = 'x'\ndefault_version = '2.28.3'\nrelocatable = false\n";
        assert_eq!(control_version(text).as_deref(), Some("2.28.3"));
        assert_eq!(control_version("comment = 'x'"), None);
    }

    #[test]
    fn debian_layout_without_pg_config() {
        let (lib, share) = install_dirs(Path::new("/nonexistent/usr/lib/postgresql/15/bin"), "15");
        assert_eq!(lib, Path::new("/nonexistent/usr/lib/postgresql/15/lib"));
        assert_eq!(share, Path::new("/nonexistent/usr/share/postgresql/15"));
    }

    #[test]
    fn start_failure_reason_is_the_server_line() {
        let err = Error::Start {
            dir: PathBuf::from("/d"),
            pg_ctl: String::new(),
            log: "2026-12-03 22:41:41.903 UTC [6431] FATAL:  could not load library \"/usr/lib/postgresql/15/lib/timescaledb.so\": undefined symbol: heap_datum_check\n2026-12-03 LOG:  database system is shut down".into(),
        };
        assert_eq!(
            timescaledb_failure(&err).as_deref(),
            Some(
                "could not load library \"/usr/lib/postgresql/15/lib/timescaledb.so\": undefined symbol: heap_datum_check"
            )
        );
        let other = Error::Start {
            dir: PathBuf::from("/d"),
            pg_ctl: String::new(),
            log: "FATAL:  could not bind".into(),
        };
        assert_eq!(timescaledb_failure(&other), None);
    }
}
