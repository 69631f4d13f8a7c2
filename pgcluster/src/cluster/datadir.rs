//! Preparing the data directory: reuse a cluster or initdb one, settings, a stale pid file.

use super::*;

impl PgCluster {
    /// Create/inspect the data directory. Returns true when it needs initdb.
    pub(super) fn prepare_data_dir(&mut self) -> Result<bool, Error> {
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

    pub(super) fn check_existing_cluster(&self) -> Result<(), Error> {
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
    pub(super) fn init_data_dir(&self) -> Result<bool, Error> {
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

    pub(super) fn initdb(&self) -> Result<(), Error> {
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

    /// Make postgresql.conf include our settings file.
    pub(super) fn ensure_include(&self) -> Result<(), Error> {
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

    pub(super) fn write_settings(&self) -> Result<(), Error> {
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
    pub(super) fn handle_existing_pid_file(&self) -> Result<(), Error> {
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
}
