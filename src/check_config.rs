//! `suiftly check-config`: validates a config file and the environment it will run in, and
//! prints what it found — one line per check (`ok`, `WARN`, `FAIL`), then a summary; exit
//! status 1 when anything failed. Run it before a first start and after editing the config
//! (docs/OPERATIONS.md, "Install").
//!
//! Checks: the file parses and validates; the ports of the chosen roles are free; the
//! directories the service writes are writable by the service user; the database is
//! reachable and has every migration this binary carries; the secrets are present and, in
//! production, not the development ones (the API's own production checks, reused); and in
//! production, no development default is left (embedded PostgreSQL, localhost origin, …).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config::Config;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// `suiftly run`: listeners, metrics, admin (+ pgwire).
    Ingest,
    /// `suiftly api`: the API and its metrics.
    Api,
    /// `suiftly manager`: its admin endpoint.
    Manager,
    /// Every role on one host.
    All,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Check as production even if `[api] production` is off.
    #[arg(long)]
    pub production: bool,
    /// The user the service runs as (directories must be writable by it); default: the
    /// current user.
    #[arg(long)]
    pub service_user: Option<String>,
    /// Which role's ports to check.
    #[arg(long, value_enum, default_value = "all")]
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// What the checks found, in order.
#[derive(Default, Debug)]
pub struct Report {
    pub findings: Vec<(Level, String, String)>,
}

impl Report {
    fn add(&mut self, level: Level, what: impl Into<String>, detail: impl Into<String>) {
        self.findings.push((level, what.into(), detail.into()));
    }
    fn ok(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.add(Level::Ok, what, detail)
    }
    fn warn(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.add(Level::Warn, what, detail)
    }
    fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.add(Level::Fail, what, detail)
    }
    pub fn count(&self, l: Level) -> usize {
        self.findings.iter().filter(|f| f.0 == l).count()
    }
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (l, what, detail) in &self.findings {
            let tag = match l {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            s.push_str(&format!("{tag}  {what}: {detail}\n"));
        }
        s.push_str(&format!(
            "check-config: {} ok, {} warnings, {} failures\n",
            self.count(Level::Ok),
            self.count(Level::Warn),
            self.count(Level::Fail)
        ));
        s
    }
}

/// The service user's uid and groups (`None`: unknown user).
fn user_ids(name: Option<&str>) -> Option<(u32, Vec<u32>, String)> {
    let name = match name {
        Some(n) => n.to_string(),
        // SAFETY: geteuid has no preconditions.
        None => {
            let uid = unsafe { libc::geteuid() };
            return Some((uid, vec![unsafe { libc::getegid() }], format!("uid {uid}")));
        }
    };
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let (uid, gid) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name.as_str()) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })?;
    let mut gids = vec![gid];
    if let Ok(group) = std::fs::read_to_string("/etc/group") {
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3
                && f[3].split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse()
            {
                gids.push(g);
            }
        }
    }
    Some((uid, gids, name))
}

/// Whether `uid`/`gids` may create files in `dir` (or, when it does not exist yet, in its
/// nearest existing ancestor, where it will be created). Returns the directory judged.
fn writable(dir: &Path, uid: u32, gids: &[u32]) -> (bool, PathBuf) {
    let mut p = dir.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q.to_path_buf(),
            _ => {
                p = PathBuf::from(".");
                break;
            }
        }
    }
    let Ok(m) = std::fs::metadata(&p) else {
        return (false, p);
    };
    if uid == 0 {
        return (m.is_dir(), p);
    }
    let mode = m.mode();
    let bits = if m.uid() == uid {
        mode >> 6
    } else if gids.contains(&m.gid()) {
        mode >> 3
    } else {
        mode
    };
    (m.is_dir() && bits & 0o3 == 0o3, p)
}

fn port_free(report: &mut Report, key: &str, addr: &str, udp: bool) {
    let r = if udp {
        std::net::UdpSocket::bind(addr).map(|_| ())
    } else {
        std::net::TcpListener::bind(addr).map(|_| ())
    };
    let proto = if udp { "udp" } else { "tcp" };
    match r {
        Ok(()) => report.ok(key, format!("{proto} {addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => report.fail(
            key,
            format!(
                "{proto} {addr} is in use (expected only while suiftly itself or its .socket unit holds it)"
            ),
        ),
        Err(e) => report.fail(key, format!("{proto} {addr}: {e}")),
    }
}

/// Runs every check; `path` is the config file (`None`: defaults and environment only).
pub async fn check(path: Option<&Path>, args: &CheckArgs) -> Report {
    let mut r = Report::default();
    let mut cfg = match Config::load(path) {
        Ok(c) => {
            r.ok(
                "configuration",
                path.map_or("defaults (no file)".into(), |p| {
                    format!("{} parses and validates", p.display())
                }),
            );
            c
        }
        Err(e) => {
            r.fail("configuration", format!("{e:#}"));
            return r;
        }
    };
    let production = args.production || cfg.api.production;
    cfg.api.production = production;
    r.ok(
        "mode",
        if production {
            "production: development defaults are failures"
        } else {
            "development: development defaults are warnings"
        },
    );

    // Ports.
    let ingest = matches!(args.role, Role::Ingest | Role::All);
    let api = matches!(args.role, Role::Api | Role::All);
    if matches!(args.role, Role::Manager | Role::All) {
        port_free(
            &mut r,
            "manager.admin_listen",
            &cfg.manager.admin_listen,
            false,
        );
    }
    if ingest {
        port_free(&mut r, "metrics.listen", &cfg.metrics.listen, false);
        port_free(&mut r, "admin.listen", &cfg.admin.listen, false);
        if let Some(p) = &cfg.admin.pgwire_listen {
            port_free(&mut r, "admin.pgwire_listen", p, false);
        }
        use suiftly_ingest::listener::Transport;
        for l in &cfg.listeners {
            let key = format!("listener {}", l.name);
            match &l.transport {
                Transport::Udp(u) => port_free(&mut r, &key, &u.address, true),
                Transport::Tcp(t) => port_free(&mut r, &key, &t.address, false),
                Transport::Unix(u) => {
                    let (uid, gids, _) = user_ids(args.service_user.as_deref()).unwrap_or((
                        u32::MAX,
                        vec![],
                        String::new(),
                    ));
                    let dir = u.path.parent().unwrap_or(Path::new("."));
                    match writable(dir, uid, &gids) {
                        (true, _) => r.ok(&key, format!("{} can be created", u.path.display())),
                        (false, p) => r.fail(
                            &key,
                            format!("{} is not writable by the service user", p.display()),
                        ),
                    }
                }
            }
        }
    }
    if api {
        port_free(&mut r, "api.listen", &cfg.api.listen, false);
        port_free(&mut r, "api.metrics_listen", &cfg.api.metrics_listen, false);
    }

    // Directories.
    match user_ids(args.service_user.as_deref()) {
        None => r.fail(
            "service user",
            format!(
                "{} does not exist",
                args.service_user.as_deref().unwrap_or("?")
            ),
        ),
        Some((uid, gids, name)) => {
            let mut dirs = vec![("data_dir", cfg.data_dir.clone())];
            if cfg.spool.enabled {
                dirs.push(("spool.dir", cfg.spool_dir()));
            }
            for (key, d) in dirs {
                match writable(&d, uid, &gids) {
                    (true, p) if p == d => {
                        r.ok(key, format!("{} is writable by {name}", d.display()))
                    }
                    (true, p) => r.ok(
                        key,
                        format!(
                            "{} does not exist yet; {name} can create it in {}",
                            d.display(),
                            p.display()
                        ),
                    ),
                    (false, p) => r.fail(
                        key,
                        format!(
                            "{} is not writable by {name} ({} is the directory that decides)",
                            d.display(),
                            p.display()
                        ),
                    ),
                }
            }
        }
    }

    // Database.
    match &cfg.database_url {
        None if production => r.fail(
            "database",
            "no DATABASE_URL: the embedded PostgreSQL is a development default",
        ),
        None => r.warn(
            "database",
            format!(
                "no DATABASE_URL: a private PostgreSQL is started under {} (development default)",
                cfg.data_dir.join("postgres").display()
            ),
        ),
        Some(url) => {
            let shown = crate::database::redact(url);
            match tokio::time::timeout(Duration::from_secs(10), suiftly_migrations::connect(url))
                .await
            {
                Err(_) => r.fail("database", format!("{shown}: no answer within 10 s")),
                Ok(Err(e)) => r.fail("database", format!("{shown}: {e}")),
                Ok(Ok(client)) => {
                    r.ok("database", format!("{shown} is reachable"));
                    let want = suiftly_migrations::versions();
                    match client
                        .query("SELECT version FROM refinery_schema_history", &[])
                        .await
                    {
                        Err(_) => r.fail(
                            "migrations",
                            "the database has no schema yet: run `suiftly migrate` (deploy.sh does)",
                        ),
                        Ok(rows) => {
                            let have: Vec<i32> = rows.iter().map(|x| x.get(0)).collect();
                            let missing: Vec<i32> =
                                want.iter().filter(|v| !have.contains(v)).copied().collect();
                            let unknown: Vec<i32> =
                                have.iter().filter(|v| !want.contains(v)).copied().collect();
                            if !missing.is_empty() {
                                r.fail(
                                    "migrations",
                                    format!(
                                        "{} pending ({missing:?}): run `suiftly migrate`",
                                        missing.len()
                                    ),
                                );
                            } else if !unknown.is_empty() {
                                r.warn(
                                    "migrations",
                                    format!(
                                        "the database has {unknown:?}, which this binary does not carry (a newer release migrated it)"
                                    ),
                                );
                            } else {
                                r.ok(
                                    "migrations",
                                    format!("all {} applied", want.len()),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    // Secrets: the API's own rules (production refuses missing and development values).
    match crate::api_cmd::api_config(&cfg.api) {
        Ok(c) if c.mock_auth => r.warn("api secrets", "MOCK_AUTH is on (development only)"),
        Ok(_) if production => r.ok(
            "api secrets",
            "SUIFTLY_JWT_SECRET, SUIFTLY_API_KEY_SECRET, SUIFTLY_KEY_ENCRYPTION_KEY set, not development values",
        ),
        Ok(_) => {
            let missing: Vec<&str> = [
                "SUIFTLY_JWT_SECRET",
                "SUIFTLY_API_KEY_SECRET",
                "SUIFTLY_KEY_ENCRYPTION_KEY",
            ]
            .into_iter()
            .filter(|v| std::env::var(v).map_or(true, |x| x.is_empty()))
            .collect();
            if missing.is_empty() {
                r.ok("api secrets", "set");
            } else {
                r.warn(
                    "api secrets",
                    format!("{missing:?} not set: development values are used"),
                );
            }
        }
        Err(e) => r.fail("api secrets", format!("{e:#}")),
    }
    match cfg.operator_token(false) {
        Ok(_) => r.ok("operator token", "present and strong enough"),
        Err(e) if e.to_string().starts_with("no operator token") => r.warn(
            "operator token",
            "none yet: `suiftly run` creates one at first start (or set SUIFTLY_OPERATOR_TOKEN)",
        ),
        Err(e) => r.fail("operator token", format!("{e:#}")),
    }
    match suiftly_escrow::check_production(cfg.escrow.kind, cfg.escrow.network, production) {
        Ok(()) => r.ok(
            "escrow",
            format!("{:?} on {:?}", cfg.escrow.kind, cfg.escrow.network),
        ),
        Err(e) => r.fail("escrow", e.to_string()),
    }
    let origin = &cfg.api.dashboard_origin;
    if production && (!origin.starts_with("https://") || origin.contains("localhost")) {
        r.fail(
            "api.dashboard_origin",
            format!("{origin:?}: production needs the dashboard's https origin (CORS)"),
        );
    }
    if production && cfg.spool.enabled && cfg.spool.fsync == crate::config::FsyncMode::Never {
        r.warn(
            "spool.fsync",
            "\"never\": a machine crash loses what the page cache held",
        );
    }
    if production && !cfg.spool.enabled {
        r.fail(
            "spool.enabled",
            "false: lines are lost while the database is down (development setting)",
        );
    }
    r
}

/// `suiftly check-config`: prints the report; `Ok(false)` when a check failed.
pub async fn run(path: Option<&Path>, args: CheckArgs) -> anyhow::Result<bool> {
    let r = check(path, &args).await;
    print!("{}", r.render());
    Ok(r.count(Level::Fail) == 0)
}
