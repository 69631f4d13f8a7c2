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

pub mod timescaledb;

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

/// The PostgreSQL server binaries in use.
#[derive(Debug, Clone)]
struct Bins {
    dir: PathBuf,
    /// Full `postgres --version` output, e.g. `postgres (PostgreSQL) 15.18 (Debian ...)`.
    version: String,
    /// Major version as written in `PG_VERSION`, e.g. `15`.
    major: String,
}

impl Bins {
    fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Client tools: next to the server binaries, else on PATH.
    fn client_tool(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        if p.is_file() { p } else { PathBuf::from(name) }
    }
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

/// Version number in a directory name like `/usr/lib/postgresql/15/bin`.
fn version_key(dir: &Path) -> Vec<u32> {
    dir.components()
        .filter_map(|c| {
            let s = c.as_os_str().to_str()?;
            let digits: String = s
                .trim_start_matches("pgsql-")
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if digits.is_empty() {
                return None;
            }
            Some(
                digits
                    .split('.')
                    .filter_map(|d| d.parse().ok())
                    .collect::<Vec<u32>>(),
            )
        })
        .next_back()
        .unwrap_or_default()
}

fn find_bin_dir() -> Result<PathBuf, Error> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        // An explicit override that is wrong is an error, not a hint.
        return Err(Error::BinariesNotFound {
            searched: vec![dir],
        });
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
    }
    let mut candidates = Vec::new();
    for (root, prefix, sub) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        if let Ok(entries) = fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(prefix)
                    && name[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
                {
                    candidates.push(e.path().join(sub));
                }
            }
        }
        searched.push(PathBuf::from(format!("{root}/{prefix}*/{sub}")));
    }
    candidates.sort_by_key(|d| std::cmp::Reverse(version_key(d)));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    searched.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates
        .into_iter()
        .find(|d| has_server_binaries(d))
        .ok_or(Error::BinariesNotFound { searched })
}

fn find_bins() -> Result<Bins, Error> {
    static CACHE: OnceLock<Bins> = OnceLock::new();
    if let Some(b) = CACHE.get() {
        return Ok(b.clone());
    }
    let dir = find_bin_dir()?;
    let postgres = dir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: postgres.clone(),
            source,
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // "postgres (PostgreSQL) 15.18 (Debian ...)": major is the part before
    // the first dot for >= 10.
    let number = version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("");
    let major = number
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("")
        .to_owned();
    let bins = Bins {
        dir,
        version,
        major,
    };
    Ok(CACHE.get_or_init(|| bins).clone())
}

/// The OS user the server runs as.
#[derive(Debug, Clone)]
struct ClusterUser {
    name: String,
    uid: u32,
    gid: u32,
    /// True when we are root and must switch to `name` in children.
    switch: bool,
}

/// (uid, gid, home directory) of a system user, via `getpwnam_r`.
fn passwd_entry(name: &str) -> Option<(u32, u32, Option<OsString>)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both owned here and
    // sized as passed; `result` is set to null or to `&pwd`; `pw_dir` points into `buf`,
    // which is alive while it is copied out.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        let home = (!pwd.pw_dir.is_null()).then(|| {
            use std::os::unix::ffi::OsStrExt;
            OsStr::from_bytes(std::ffi::CStr::from_ptr(pwd.pw_dir).to_bytes()).to_owned()
        });
        Some((pwd.pw_uid, pwd.pw_gid, home))
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    passwd_entry(name).map(|(uid, gid, _)| (uid, gid))
}

fn current_user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in lookup_user.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    format!("uid {uid}")
}

impl ClusterUser {
    fn resolve() -> Result<ClusterUser, Error> {
        // SAFETY: plain getters without preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if euid != 0 {
            return Ok(ClusterUser {
                name: current_user_name(euid),
                uid: euid,
                gid: egid,
                switch: false,
            });
        }
        match lookup_user(SYSTEM_USER) {
            Some((uid, gid)) if uid != 0 => Ok(ClusterUser {
                name: SYSTEM_USER.to_owned(),
                uid,
                gid,
                switch: true,
            }),
            _ => Err(Error::NoPostgresUser {
                user: SYSTEM_USER.to_owned(),
            }),
        }
    }

    /// Give `path` to the cluster user (no-op unless we are root).
    fn own(&self, path: &Path) -> Result<(), Error> {
        if self.switch {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
                .map_err(io_err(format!("could not chown {}", path.display())))?;
        }
        Ok(())
    }

    /// Can this user search (traverse) a directory with this metadata?
    fn can_search(&self, md: &fs::Metadata) -> bool {
        let mode = md.mode();
        if md.uid() == self.uid {
            mode & 0o100 != 0
        } else if md.gid() == self.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}

/// Environment variables that would change what the PostgreSQL tools do.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LC_ALL", "C").stdin(Stdio::null());
}

fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim_end();
    if !err.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(err);
    }
    s
}

fn run(mut cmd: Command) -> Result<Output, Error> {
    let program = PathBuf::from(cmd.get_program());
    tracing::debug!(?cmd, "pgcluster: running");
    cmd.output()
        .map_err(|source| Error::Spawn { program, source })
}

/// Tail of the log file from byte `from` on (at most LOG_TAIL_BYTES).
fn log_tail(path: &Path, from: u64) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log file at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = if from > len { 0 } else { from };
    let start = from.max(len.saturating_sub(LOG_TAIL_BYTES));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return format!("(could not read {})", path.display());
    }
    let text = String::from_utf8_lossy(&buf);
    let text = if start > from {
        // Drop the partial first line.
        text.split_once('\n').map(|x| x.1).unwrap_or(&text)
    } else {
        &text
    };
    let text = text.trim_end();
    if text.is_empty() {
        "(log is empty)".to_owned()
    } else {
        text.to_owned()
    }
}

/// Quote a value for a libpq key=value connection string.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return v.to_owned();
    }
    let mut s = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

fn percent_encode(v: &str) -> String {
    let mut s = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// Quote a value for postgresql.conf.
fn conf_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn pick_port() -> Result<u16, Error> {
    let l = TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("could not find a free port on 127.0.0.1"))?;
    Ok(l.local_addr()
        .map_err(io_err("could not find a free port on 127.0.0.1"))?
        .port())
}

fn tcp_port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Watchdog run by `sh`: waits for EOF on stdin (its owner died or dropped
/// the cluster), then signals the postmaster of data dir `$1` with signal `$2`
/// if it is still running, waits for it, and removes the remaining arguments.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP
read -r _unused
f="$1/postmaster.pid"
if [ -r "$f" ]; then
  pid=$(head -n 1 "$f")
  case "$pid" in
    ''|*[!0-9]*) ;;
    *)
      if [ "$(readlink "/proc/$pid/cwd")" = "$1" ]; then
        kill -"$2" "$pid" 2>/dev/null
        n=0
        while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 600 ]; do sleep 0.1; n=$((n+1)); done
      fi ;;
  esac
fi
shift 2
for d in "$@"; do rm -rf -- "$d"; done
"#;

/// A running (or stopped) private PostgreSQL cluster. Dropping it stops the
/// server; a temporary cluster's directory is removed too.
#[derive(Debug)]
pub struct PgCluster {
    opts: ClusterOptions,
    bins: Bins,
    user: ClusterUser,
    port: u16,
    /// Port given by the caller (never changed on retries).
    port_fixed: bool,
    socket_dir: PathBuf,
    temporary: bool,
    running: bool,
    watchdog: Option<Child>,
    /// Holds the socket dir (and, for a temporary cluster, the data dir);
    /// removed on drop. Declared last so it is dropped after the server stops.
    run_dir: Option<tempfile::TempDir>,
}

impl PgCluster {
    /// Start a cluster in `opts.data_dir`: `initdb` when it is missing or
    /// empty, reuse it otherwise (a stale `postmaster.pid`, or a server left
    /// running by a crashed owner, is dealt with), start the server, wait
    /// until it accepts connections and create `opts.database` if missing.
    pub fn start(opts: ClusterOptions) -> Result<PgCluster, Error> {
        Self::launch(opts, false)
    }

    /// A throwaway cluster in a fresh temporary directory (fsync off,
    /// database `suiftly`, unix socket only), removed on drop.
    pub fn temporary() -> Result<PgCluster, Error> {
        Self::temporary_with(|_| {})
    }

    /// Like [`PgCluster::temporary`], with options adjusted by `configure`
    /// (its `data_dir` is ignored: the data lives in the temporary directory).
    pub fn temporary_with(configure: impl FnOnce(&mut ClusterOptions)) -> Result<PgCluster, Error> {
        let mut opts = ClusterOptions::new(PathBuf::new());
        opts.fsync = false;
        timescaledb::apply_test_storage(&mut opts)?;
        configure(&mut opts);
        Self::launch(opts, true)
    }

    fn launch(mut opts: ClusterOptions, temporary: bool) -> Result<PgCluster, Error> {
        let t0 = Instant::now();
        let bins = find_bins()?;
        let user = ClusterUser::resolve()?;

        let run_dir = tempfile::Builder::new()
            .prefix("pgcluster-")
            .tempdir_in(run_base(temporary))
            .map_err(io_err(format!(
                "could not create a temporary directory in {}",
                run_base(temporary).display()
            )))?;
        let run_path = run_dir.path().to_path_buf();
        make_private_dir(&run_path, &user)?;
        let socket_dir = run_path.join("sock");
        make_private_dir(&socket_dir, &user)?;
        let probe = socket_dir.join(".s.PGSQL.65535.lock");
        let len = probe.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Error::SocketPathTooLong { path: probe, len });
        }

        if temporary {
            opts.data_dir = run_path.join("data");
        }
        let port_fixed = opts.port.is_some();
        let port = match opts.port {
            Some(p) => p,
            None => pick_port()?,
        };
        let mut cluster = PgCluster {
            opts,
            bins,
            user,
            port,
            port_fixed,
            socket_dir,
            temporary,
            running: false,
            watchdog: None,
            run_dir: Some(run_dir),
        };

        let fresh = cluster.prepare_data_dir()?;
        cluster.spawn_watchdog(&run_path);
        let mut from_template = false;
        if fresh {
            from_template = cluster.init_data_dir()?;
        } else {
            cluster.check_existing_cluster()?;
        }
        let t_init = t0.elapsed();

        match cluster.start_server() {
            Ok(()) => {}
            Err(e) if from_template => {
                // Maybe the cached template is damaged: retry from a fresh
                // initdb, and drop the template only if that works (a bad
                // setting fails both ways and must not cost the template).
                tracing::warn!(
                    "pgcluster: cluster copied from the initdb template failed to start ({e}); retrying with initdb"
                );
                let _ = cluster.pg_ctl_stop("immediate");
                empty_dir(&cluster.opts.data_dir)?;
                cluster.initdb()?;
                cluster.ensure_include()?;
                cluster.start_server()?;
                cluster.discard_template();
            }
            Err(e) => return Err(e),
        }
        cluster.ensure_database()?;
        tracing::info!(
            data_dir = %cluster.opts.data_dir.display(),
            socket_dir = %cluster.socket_dir.display(),
            port = cluster.port,
            init_ms = t_init.as_millis() as u64,
            total_ms = t0.elapsed().as_millis() as u64,
            "pgcluster: postgresql started"
        );
        Ok(cluster)
    }

    /// libpq key=value connection string, usable by tokio-postgres:
    /// `host=<socket dir> port=<port> user=postgres dbname=<database>`.
    pub fn connection_string(&self) -> String {
        self.connection_string_for(&self.opts.database)
    }

    /// Connection string for another database of this cluster.
    pub fn connection_string_for(&self, database: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            SUPERUSER,
            conninfo_value(database)
        )
    }

    /// `postgresql://postgres@<percent-encoded socket dir>:<port>/<database>`.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{}@{}:{}/{}",
            SUPERUSER,
            percent_encode(&self.socket_dir.to_string_lossy()),
            self.port,
            percent_encode(&self.opts.database)
        )
    }

    /// `postgresql://postgres@127.0.0.1:<port>/<database>` when the cluster
    /// listens on TCP (`ClusterOptions::tcp`).
    pub fn tcp_url(&self) -> Option<String> {
        self.opts.tcp.then(|| {
            format!(
                "postgresql://{}@127.0.0.1:{}/{}",
                SUPERUSER,
                self.port,
                percent_encode(&self.opts.database)
            )
        })
    }

    /// Directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.opts.data_dir
    }

    pub fn database(&self) -> &str {
        &self.opts.database
    }

    /// The server log file (inside the data directory).
    pub fn log_file(&self) -> PathBuf {
        self.opts.data_dir.join(LOG_FILE)
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Major version of the server binaries, e.g. `15`.
    pub fn server_major_version(&self) -> &str {
        &self.bins.major
    }

    /// Stop the server (`pg_ctl stop -m fast`); does nothing if stopped.
    pub fn stop(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl_stop("fast")?;
        self.running = false;
        Ok(())
    }

    /// Stop the server at once (`pg_ctl stop -m immediate`, as after a crash:
    /// the next start runs crash recovery); does nothing if stopped.
    pub fn kill(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl_stop("immediate")?;
        self.running = false;
        Ok(())
    }

    /// Start the server again after [`stop`](Self::stop) or
    /// [`kill`](Self::kill), on the same port and socket directory; does
    /// nothing if running.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.running {
            return Ok(());
        }
        self.port_fixed = true;
        self.start_server()
    }

    // ----- internals -----

    fn cluster_cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        clean_env(&mut cmd);
        cmd.current_dir("/");
        if self.user.switch {
            // std drops supplementary groups (setgroups(0)) when uid is set as root.
            cmd.uid(self.user.uid).gid(self.user.gid);
            cmd.env("USER", &self.user.name)
                .env("LOGNAME", &self.user.name);
            if let Some(home) = home_of(&self.user.name) {
                cmd.env("HOME", home);
            }
        }
        cmd
    }

    fn client_cmd(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bins.client_tool(tool));
        clean_env(&mut cmd);
        cmd.args([
            OsStr::new("-h"),
            self.socket_dir.as_os_str(),
            OsStr::new("-p"),
            OsStr::new(&self.port.to_string()),
            OsStr::new("-U"),
            OsStr::new(SUPERUSER),
        ]);
        cmd
    }

    /// Create/inspect the data directory. Returns true when it needs initdb.
    fn prepare_data_dir(&mut self) -> Result<bool, Error> {
        let dir = self.opts.data_dir.clone();
        if dir.as_os_str().is_empty() {
            return Err(Error::Io {
                context: "no data directory given".to_owned(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        let existed = dir.exists();
        if !existed {
            fs::create_dir_all(&dir).map_err(io_err(format!(
                "could not create data directory {}",
                dir.display()
            )))?;
        }
        let dir = fs::canonicalize(&dir).map_err(io_err(format!(
            "could not resolve data directory {}",
            dir.display()
        )))?;
        self.opts.data_dir = dir.clone();

        if self.user.switch {
            for parent in dir.ancestors().skip(1) {
                let md = fs::metadata(parent)
                    .map_err(io_err(format!("could not inspect {}", parent.display())))?;
                if !self.user.can_search(&md) {
                    return Err(Error::NotTraversable {
                        dir: parent.to_path_buf(),
                        mode: md.mode() & 0o7777,
                        user: self.user.name.clone(),
                        data_dir: dir.clone(),
                    });
                }
            }
        }

        let empty = fs::read_dir(&dir)
            .map_err(io_err(format!(
                "could not read data directory {}",
                dir.display()
            )))?
            .next()
            .is_none();
        if empty {
            make_private_dir(&dir, &self.user)?;
            return Ok(true);
        }
        if !dir.join("PG_VERSION").is_file() {
            return Err(Error::NotACluster { dir });
        }
        Ok(false)
    }

    fn check_existing_cluster(&self) -> Result<(), Error> {
        let dir = &self.opts.data_dir;
        let data_version = fs::read_to_string(dir.join("PG_VERSION"))
            .map_err(io_err(format!(
                "could not read {}/PG_VERSION",
                dir.display()
            )))?
            .trim()
            .to_owned();
        if !self.bins.major.is_empty() && data_version != self.bins.major {
            return Err(Error::VersionMismatch {
                dir: dir.clone(),
                data_version,
                bin_dir: self.bins.dir.clone(),
                bin_version: self.bins.major.clone(),
            });
        }
        let md =
            fs::metadata(dir).map_err(io_err(format!("could not inspect {}", dir.display())))?;
        if md.uid() != self.user.uid {
            return Err(Error::WrongOwner {
                dir: dir.clone(),
                owner: md.uid(),
                user: self.user.name.clone(),
                uid: self.user.uid,
            });
        }
        if md.mode() & 0o077 != 0 {
            // postgres insists on 0700 (or 0750); we own it, so fix it.
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        self.ensure_include()
    }

    /// Fill an empty data directory; returns true when it came from the
    /// cached template rather than a fresh initdb.
    fn init_data_dir(&self) -> Result<bool, Error> {
        let use_template = self.temporary
            && !std::env::var_os("PGCLUSTER_NO_TEMPLATE")
                .is_some_and(|v| !v.is_empty() && v != "0");
        let template = self.template_dir();
        if use_template && self.template_usable(&template) {
            let out = run({
                let mut c = Command::new("cp");
                c.arg("-a")
                    .arg("--")
                    .arg(template.join("data").join("."))
                    .arg(&self.opts.data_dir);
                c
            })?;
            if out.status.success() {
                tracing::debug!(template = %template.display(), "pgcluster: copied initdb template");
                self.ensure_include()?;
                return Ok(true);
            }
            tracing::warn!(
                "pgcluster: copying initdb template {} failed: {}; running initdb",
                template.display(),
                output_text(&out)
            );
            empty_dir(&self.opts.data_dir)?;
        }
        self.initdb()?;
        if use_template {
            self.save_template(&template);
        }
        self.ensure_include()?;
        Ok(false)
    }

    fn initdb(&self) -> Result<(), Error> {
        let mut cmd = self.cluster_cmd(self.bins.tool("initdb"));
        cmd.arg("-D").arg(&self.opts.data_dir).args([
            "--auth=trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
        ]);
        if !self.opts.fsync {
            cmd.arg("--no-sync");
        }
        let t = Instant::now();
        let out = run(cmd)?;
        if !out.status.success() {
            return Err(Error::Initdb {
                dir: self.opts.data_dir.clone(),
                status: out.status,
                log: output_text(&out),
            });
        }
        tracing::debug!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "pgcluster: initdb done"
        );
        Ok(())
    }

    fn template_dir(&self) -> PathBuf {
        let key = format!(
            "{}\n{}\n{}\n--auth=trust -U {SUPERUSER} --encoding=UTF8 --locale=C v1",
            self.bins.version,
            self.bins.dir.display(),
            self.user.uid
        );
        run_base(true).join(format!(
            "pgcluster-template-{}-{:016x}",
            self.bins.major,
            fnv1a(key.as_bytes())
        ))
    }

    fn template_usable(&self, template: &Path) -> bool {
        let Ok(md) = fs::symlink_metadata(template) else {
            return false;
        };
        md.is_dir()
            && md.uid() == self.user.uid
            && md.mode() & 0o077 == 0
            && template.join("data/PG_VERSION").is_file()
            && template.join("data/global/pg_control").is_file()
    }

    /// Save the pristine data dir as the template (best effort, atomic).
    fn save_template(&self, template: &Path) {
        let staging = template.with_file_name(format!(
            "{}.tmp-{}-{}",
            template.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            self.port
        ));
        let result = (|| -> Result<(), Error> {
            make_private_dir(&staging, &self.user)?;
            let out = run({
                let mut c = Command::new("cp");
                c.arg("-a")
                    .arg("--")
                    .arg(&self.opts.data_dir)
                    .arg(staging.join("data"));
                c
            })?;
            if !out.status.success() {
                return Err(Error::Io {
                    context: format!("cp -a failed: {}", output_text(&out)),
                    source: io::Error::other("cp failed"),
                });
            }
            fs::rename(&staging, template).map_err(io_err("rename"))
        })();
        if let Err(e) = result {
            // Another process may have saved it first; that is fine.
            tracing::debug!("pgcluster: initdb template not saved: {e}");
            let _ = fs::remove_dir_all(&staging);
        }
    }

    fn discard_template(&self) {
        let template = self.template_dir();
        let trash = template.with_file_name(format!(
            "{}.trash-{}",
            template.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        if fs::rename(&template, &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
        }
    }

    /// Make postgresql.conf include our settings file.
    fn ensure_include(&self) -> Result<(), Error> {
        let conf = self.opts.data_dir.join("postgresql.conf");
        let text = fs::read_to_string(&conf)
            .map_err(io_err(format!("could not read {}", conf.display())))?;
        let line = format!("include_if_exists = '{CONF_FILE}'");
        if text.lines().any(|l| l.trim() == line) {
            return Ok(());
        }
        let mut text = text;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("\n# settings written by pgcluster at each start\n");
        text.push_str(&line);
        text.push('\n');
        fs::write(&conf, text).map_err(io_err(format!("could not write {}", conf.display())))
    }

    fn write_settings(&self) -> Result<(), Error> {
        let mut s = String::from("# written by pgcluster at each start; edits are overwritten\n");
        let listen = if self.opts.tcp { "127.0.0.1" } else { "" };
        let fsync = if self.opts.fsync { "on" } else { "off" };
        let shared_buffers = if self.temporary { "32MB" } else { "128MB" };
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), listen.into()),
            ("port".into(), self.port.to_string()),
            (
                "unix_socket_directories".into(),
                self.socket_dir.to_string_lossy().into_owned(),
            ),
            ("unix_socket_permissions".into(), "0700".into()),
            ("fsync".into(), fsync.into()),
            ("full_page_writes".into(), fsync.into()),
            ("shared_buffers".into(), shared_buffers.into()),
            ("max_connections".into(), "100".into()),
            ("logging_collector".into(), "off".into()),
        ];
        settings.extend(self.opts.extra_settings.iter().cloned());
        for (k, v) in settings {
            let _ = writeln!(s, "{k} = {}", conf_value(&v));
        }
        let path = self.opts.data_dir.join(CONF_FILE);
        fs::write(&path, s).map_err(io_err(format!("could not write {}", path.display())))?;
        self.user.own(&path)
    }

    /// A postmaster.pid left behind: stop a server still running on this
    /// data directory (e.g. left by a killed owner), or remove a stale file
    /// whose pid is dead or now belongs to an unrelated process.
    fn handle_existing_pid_file(&self) -> Result<(), Error> {
        let pid_file = self.opts.data_dir.join("postmaster.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid: i32 = text
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(0);
        if pid > 0 && process_alive(pid) {
            match fs::read_link(format!("/proc/{pid}/cwd")) {
                Ok(cwd) if cwd == self.opts.data_dir => {
                    tracing::warn!(
                        pid,
                        data_dir = %self.opts.data_dir.display(),
                        "pgcluster: a postgresql server is still running on this data directory; stopping it"
                    );
                    if self.pg_ctl_stop("fast").is_err() {
                        self.pg_ctl_stop("immediate")?;
                    }
                    return Ok(());
                }
                Ok(_) => {}
                // Cannot tell: let postgres decide.
                Err(_) => return Ok(()),
            }
        }
        tracing::info!(
            pid,
            "pgcluster: removing stale {} (its server is gone)",
            pid_file.display()
        );
        fs::remove_file(&pid_file).map_err(io_err(format!(
            "could not remove stale {}",
            pid_file.display()
        )))
    }

    fn rotate_log(&self) {
        let log = self.log_file();
        if fs::metadata(&log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let _ = fs::rename(&log, self.opts.data_dir.join(format!("{LOG_FILE}.1")));
        }
    }

    fn start_server(&mut self) -> Result<(), Error> {
        self.handle_existing_pid_file()?;
        self.rotate_log();
        let log = self.log_file();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.opts.tcp && !tcp_port_free(self.port) {
                if self.port_fixed {
                    return Err(Error::PortInUse { port: self.port });
                }
                self.port = pick_port()?;
                continue;
            }
            self.write_settings()?;
            let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let mut cmd = self.cluster_cmd(self.bins.tool("pg_ctl"));
            cmd.arg("start")
                .arg("-D")
                .arg(&self.opts.data_dir)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-s"]);
            let t = Instant::now();
            let out = run(cmd)?;
            if out.status.success() {
                self.running = true;
                tracing::debug!(
                    elapsed_ms = t.elapsed().as_millis() as u64,
                    "pgcluster: pg_ctl start done"
                );
                return Ok(());
            }
            let tail = log_tail(&log, log_start);
            // pg_ctl may have given up waiting on a server that is still
            // coming up: do not leave it behind.
            let _ = self.pg_ctl_stop("immediate");
            let port_clash = tail.contains("could not bind")
                || tail.contains("already in use")
                || tail.contains("lock file") && tail.contains("already exists");
            if port_clash && !self.port_fixed && attempt < START_ATTEMPTS {
                tracing::info!(
                    port = self.port,
                    "pgcluster: port clash on start, retrying with another port"
                );
                self.port = pick_port()?;
                continue;
            }
            return Err(Error::Start {
                dir: self.opts.data_dir.clone(),
                pg_ctl: output_text(&out),
                log: tail,
            });
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), Error> {
        let mut cmd = self.cluster_cmd(self.bins.tool("pg_ctl"));
        cmd.arg("stop").arg("-D").arg(&self.opts.data_dir).args([
            "-m",
            mode,
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "-s",
        ]);
        let out = run(cmd)?;
        if out.status.success() || !self.opts.data_dir.join("postmaster.pid").exists() {
            return Ok(());
        }
        Err(Error::Stop {
            dir: self.opts.data_dir.clone(),
            log: output_text(&out),
        })
    }

    fn ensure_database(&self) -> Result<(), Error> {
        let db = &self.opts.database;
        let mut q = self.client_cmd("psql");
        q.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "postgres",
            "-c",
        ])
        .arg(format!(
            "select 1 from pg_database where datname = {}",
            sql_literal(db)
        ));
        let out = run(q)?;
        if !out.status.success() {
            return Err(Error::CreateDatabase {
                database: db.clone(),
                log: format!("psql could not query the server: {}", output_text(&out)),
            });
        }
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return Ok(());
        }
        let mut c = self.client_cmd("createdb");
        c.arg("--").arg(db);
        let out = run(c)?;
        if !out.status.success() {
            return Err(Error::CreateDatabase {
                database: db.clone(),
                log: output_text(&out),
            });
        }
        Ok(())
    }

    fn spawn_watchdog(&mut self, run_dir: &Path) {
        let signal = if self.temporary { "QUIT" } else { "INT" };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pgcluster-watchdog")
            .arg(&self.opts.data_dir)
            .arg(signal)
            .arg(run_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0);
        match cmd.spawn() {
            Ok(child) => self.watchdog = Some(child),
            Err(e) => tracing::warn!(
                "pgcluster: could not start the watchdog (servers may outlive a killed owner): {e}"
            ),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if self.running
            && let Err(e) = self.stop()
        {
            tracing::warn!("pgcluster: {e}; stopping immediately");
            let _ = self.pg_ctl_stop("immediate");
        }
        if let Some(dir) = self.run_dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!("pgcluster: could not remove {}: {e}", path.display());
            }
        }
    }
}

/// Where run directories (socket, temporary data) and the initdb template
/// go: `PGCLUSTER_TMPDIR` if set; for temporary clusters `/dev/shm` when it
/// is a roomy tmpfs (no disk I/O: several times faster than a busy disk);
/// else the temp dir, unless its path is too long for a unix socket.
fn run_base(temporary: bool) -> PathBuf {
    if let Some(d) = std::env::var_os("PGCLUSTER_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if temporary && shm_usable() {
        return PathBuf::from("/dev/shm");
    }
    let tmp = std::env::temp_dir();
    // "/pgcluster-XXXXXX/sock/.s.PGSQL.65535.lock"
    if tmp.as_os_str().len() + 42 > MAX_SOCKET_PATH {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

/// `/dev/shm` is a writable directory with at least 2 GiB free (Docker's
/// default 64 MiB one is not).
fn shm_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let Ok(path) = CString::new("/dev/shm") else {
            return false;
        };
        // SAFETY: statvfs fills the zeroed struct; path is a valid C string.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(path.as_ptr(), &mut st) != 0 {
                return false;
            }
            let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
            free >= 2 << 30 && libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0
        }
    })
}

fn make_private_dir(dir: &Path, user: &ClusterUser) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io_err(format!("could not create {}", dir.display()))(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("could not chmod {}", dir.display())))?;
    user.own(dir)
}

fn empty_dir(dir: &Path) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("could not read {}", dir.display())))?;
    for e in entries.flatten() {
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(io_err(format!("could not remove {}", p.display())))?;
    }
    Ok(())
}

fn home_of(name: &str) -> Option<OsString> {
    passwd_entry(name).and_then(|(_, _, home)| home)
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
