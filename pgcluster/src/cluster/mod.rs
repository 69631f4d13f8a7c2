//! [`PgCluster`]: start (with the data directory prepared in `datadir` and the initdb
//! template in `template`), connection strings, stop, the watchdog.

mod datadir;
mod template;

use crate::*;

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
    pub(crate) opts: ClusterOptions,
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
