//! A private PostgreSQL cluster started from the machine's own PostgreSQL
//! binaries.
//!
//! # Why this crate exists
//!
//! The `suiftly` binary needs a database even when nobody gave it a
//! `DATABASE_URL` (the "embedded default"), and every integration test needs a
//! real PostgreSQL server of its own. Both get one from here: [`PgCluster`]
//! runs `initdb` and `pg_ctl` from the installed server binaries (found with
//! `PG_BIN_DIR`, `pg_config --bindir` or `/usr/lib/postgresql/*/bin`), either in
//! a persistent data directory ([`PgCluster::start`]) or in a throwaway
//! temporary directory ([`PgCluster::temporary`]) that is deleted on drop.
//!
//! # Layout
//!
//! - this file: [`ClusterOptions`], [`Error`] (every message says what to do);
//! - `cluster`: [`PgCluster`] — start/stop/connection strings, the watchdog; `cluster::datadir`
//!   prepares the data directory, `cluster::template` keeps the initdb template;
//! - `bins`: finding the server binaries; `user`: who runs the server;
//! - `process`: running the tools; `dirs`: run directories; `util`: quoting, ports.
//!
//! # Root
//!
//! PostgreSQL refuses to run as root, and this project's machines (developers'
//! and CI) run everything as root. When the effective uid is 0, `initdb`,
//! `pg_ctl` and the server run as the `postgres` system user instead (uid/gid
//! switched in the child, supplementary groups dropped), and the data and
//! socket directories are owned by that user. Every parent of the data
//! directory must therefore be searchable by `postgres`; if one is not, start
//! fails with an error naming the directory to `chmod`. As an unprivileged user
//! everything simply runs as that user.
//!
//! # Private socket
//!
//! The server listens on a unix socket in a fresh directory of mode 0700 owned
//! by the cluster user, and by default on no TCP address at all
//! (`listen_addresses = ''`). Only that user and root can reach the socket, so
//! the cluster uses `trust` authentication and the superuser `postgres`
//! without a password. Because the socket directory is private, clusters never
//! collide on the socket's port number; a free port is still chosen (and
//! checked on 127.0.0.1) so the optional TCP listener works too.
//!
//! # Cleanup
//!
//! Dropping a [`PgCluster`] stops the server (and removes a temporary
//! cluster's directory). So that a test process killed by a timeout, or a
//! cluster kept in a `static` (never dropped), does not leak servers, each
//! cluster also has a tiny watchdog shell process that waits on a pipe from
//! its owner: when the owner process dies, the watchdog stops the server and
//! removes the temporary directories.
//!
//! # Speed
//!
//! `initdb` takes most of a temporary cluster's start-up time, so temporary
//! clusters copy a pristine `initdb` result cached in the temp directory
//! (`pgcluster-template-*`, keyed by server version, binaries and user) when
//! one exists, and create it on first use. Set `PGCLUSTER_NO_TEMPLATE=1` to
//! always run `initdb`. A broken template is discarded and `initdb` is used.
//! Temporary clusters (and the template) live in `/dev/shm` when it is a
//! roomy tmpfs, since a cluster's start writes tens of megabytes that nobody
//! needs on disk; `PGCLUSTER_TMPDIR` overrides the location.
//!
//! # TimescaleDB
//!
//! [`timescaledb`]: whether the extension is installed for these binaries, an option to
//! preload it, the embedded default's start that prefers it, and `SUIFTLY_TEST_STORAGE`, which
//! makes temporary clusters preload it (the storage-mode test matrix).

use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

mod bins;
mod cluster;
mod dirs;
mod process;
mod user;
mod util;

pub mod timescaledb;

use bins::*;
pub use cluster::PgCluster;
use dirs::*;
use process::*;
use user::*;
use util::*;

/// Name of the superuser created by `initdb` (and of the system user the
/// server runs as when we are root).
pub const SUPERUSER: &str = "postgres";
/// Database created by default.
pub const DEFAULT_DATABASE: &str = "suiftly";
/// Server log file, inside the data directory.
pub const LOG_FILE: &str = "server.log";
/// Settings file written by this crate at each start, inside the data
/// directory, and included from `postgresql.conf`.
pub const CONF_FILE: &str = "pgcluster.conf";

const SYSTEM_USER: &str = "postgres";
const START_ATTEMPTS: usize = 5;
const PG_CTL_TIMEOUT_SECS: &str = "60";
const LOG_ROTATE_BYTES: u64 = 16 << 20;
const LOG_TAIL_BYTES: u64 = 8 << 10;
/// `sun_path` is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How to start a cluster with [`PgCluster::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Data directory: created and `initdb`-ed when missing or empty, reused
    /// when it already holds a cluster.
    pub data_dir: PathBuf,
    /// Port number (also names the socket file `.s.PGSQL.<port>`); `None`
    /// picks a free one.
    pub port: Option<u16>,
    /// Database created (if missing) and named in the connection string.
    pub database: String,
    /// `fsync` (and `full_page_writes`); turn off only for throwaway data.
    pub fsync: bool,
    /// Also listen on 127.0.0.1:`port` (never on other addresses).
    pub tcp: bool,
    /// Extra `postgresql.conf` settings, applied last (they override ours).
    pub extra_settings: Vec<(String, String)>,
}

impl ClusterOptions {
    /// Defaults for a persistent cluster in `data_dir`: free port, database
    /// `suiftly`, fsync on, unix socket only.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            data_dir: data_dir.into(),
            port: None,
            database: DEFAULT_DATABASE.to_owned(),
            fsync: true,
            tcp: false,
            extra_settings: Vec::new(),
        }
    }
}

/// Errors from starting or stopping a cluster. Messages say what to do.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error(
        "postgresql server binaries (initdb, pg_ctl, postgres) not found; searched {}; install them with `apt-get install postgresql` or set PG_BIN_DIR to the directory that holds them",
        show_paths(searched)
    )]
    BinariesNotFound { searched: Vec<PathBuf> },

    #[error(
        "running as root, but postgresql refuses to run as root and there is no `{user}` system user to run it as; create one with `useradd --system --user-group --home-dir /var/lib/postgresql {user}` (installing the postgresql package also creates it)"
    )]
    NoPostgresUser { user: String },

    #[error(
        "directory {} (mode {mode:o}) is not searchable by user `{user}`, who runs postgresql and must reach the data directory {}; run `chmod o+x {}` or choose a data directory elsewhere",
        dir.display(), data_dir.display(), dir.display()
    )]
    NotTraversable {
        dir: PathBuf,
        mode: u32,
        user: String,
        data_dir: PathBuf,
    },

    #[error(
        "data directory {} is not empty and is not a postgresql cluster (it has no PG_VERSION file); empty or remove it, or choose another data directory",
        dir.display()
    )]
    NotACluster { dir: PathBuf },

    #[error(
        "data directory {} belongs to uid {owner}, but postgresql runs as `{user}` (uid {uid}); run `chown -R {user}: {}` or choose another data directory",
        dir.display(), dir.display()
    )]
    WrongOwner {
        dir: PathBuf,
        owner: u32,
        user: String,
        uid: u32,
    },

    #[error(
        "data directory {} was created by postgresql {data_version}, but the binaries in {} are postgresql {bin_version}; upgrade it with pg_upgrade, or set PG_BIN_DIR to postgresql {data_version} binaries",
        dir.display(), bin_dir.display()
    )]
    VersionMismatch {
        dir: PathBuf,
        data_version: String,
        bin_dir: PathBuf,
        bin_version: String,
    },

    #[error(
        "socket path {} is {len} bytes, longer than a unix socket allows ({MAX_SOCKET_PATH}); set TMPDIR to a shorter directory",
        path.display()
    )]
    SocketPathTooLong { path: PathBuf, len: usize },

    #[error(
        "port {port} on 127.0.0.1 is already in use; choose another port or leave it unset to pick a free one"
    )]
    PortInUse { port: u16 },

    #[error("initdb failed for {} ({status}):\n{log}", dir.display())]
    Initdb {
        dir: PathBuf,
        status: ExitStatus,
        log: String,
    },

    #[error(
        "postgresql failed to start from data directory {}; pg_ctl said: {pg_ctl}\nserver log ({}) tail:\n{log}",
        dir.display(), dir.join(LOG_FILE).display()
    )]
    Start {
        dir: PathBuf,
        pg_ctl: String,
        log: String,
    },

    #[error("postgresql failed to stop (data directory {}): {log}", dir.display())]
    Stop { dir: PathBuf, log: String },

    #[error("could not create database `{database}`: {log}")]
    CreateDatabase { database: String, log: String },

    #[error("could not run {}: {source}; is it installed and executable?", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Timescaledb(#[from] timescaledb::TimescaledbError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn show_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<PgCluster>();
    is::<Error>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_quoting() {
        assert_eq!(conninfo_value("/tmp/x"), "/tmp/x");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("it's"), r"'it\'s'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("/tmp/pg-1/sock"), "%2Ftmp%2Fpg-1%2Fsock");
    }

    #[test]
    fn conf_quoting() {
        assert_eq!(conf_value("it's"), "'it''s'");
        assert_eq!(conf_value(""), "''");
    }

    #[test]
    fn version_sorting() {
        assert_eq!(
            version_key(Path::new("/usr/lib/postgresql/15/bin")),
            vec![15]
        );
        assert_eq!(version_key(Path::new("/usr/pgsql-9.6/bin")), vec![9, 6]);
        assert!(
            version_key(Path::new("/usr/lib/postgresql/16/bin"))
                > version_key(Path::new("/usr/lib/postgresql/9.6/bin"))
        );
    }
}
