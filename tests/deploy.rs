//! The operator's kit in `deploy/`, run for real in scratch roots: the units pass
//! `systemd-analyze verify` as installed; provision / deploy / backup / restore each run twice
//! and the second run changes nothing (the file tree is compared, not only the output); a
//! deploy whose health check fails rolls back; backup → restore into a fresh database gives
//! the same tables row for row and `suiftly audit` passes on the copy.
//!
//! No systemd runs here: `systemctl` is replaced (`SUIFTLY_SYSTEMCTL`) by a script that
//! starts the role's subcommand from `/opt/suiftly/current` in the background, so the health
//! checks talk to a real `suiftly api`. Enabling units uses the real `systemctl --root`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgcluster::PgCluster;

mod common;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed (.ci/run installs systemd and postgresql)");
}

/// A scratch root with the host files the scripts need: an /etc/passwd (etc.) holding only
/// root, and a state directory for the fake systemctl.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let state = dir.path().join("systemctl");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        for f in ["passwd", "group", "shadow", "gshadow"] {
            let host = std::fs::read_to_string(format!("/etc/{f}")).unwrap_or_default();
            let line: String = host
                .lines()
                .filter(|l| l.starts_with("root:"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(root.join("etc").join(f), line).unwrap();
        }
        let fake = state.join("systemctl");
        std::fs::write(
            &fake,
            format!(
                r#"#!/bin/sh
# Test stand-in for systemctl: `restart suiftly-<role>.service` (re)starts that role from
# /opt/suiftly/current in the background, as systemd would with the unit's environment.
S={state}
R={root}
echo "$*" >>"$S/calls"
case "$1" in
daemon-reload | enable) exit 0 ;;
is-active) exit 3 ;;
stop | restart)
    role=${{2#suiftly-}}; role=${{role%.service}}
    case "$role" in ingest) sub=run ;; *) sub=$role ;; esac
    if [ -f "$S/$role.pid" ]; then
        pid=$(cat "$S/$role.pid")
        kill "$pid" 2>/dev/null
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        rm -f "$S/$role.pid"
    fi
    [ "$1" = stop ] && exit 0
    (
        set -a; . "$R/etc/suiftly/suiftly.env"; set +a
        SUIFTLY_CONFIG="$R/etc/suiftly/suiftly.toml" SUIFTLY_DATA_DIR="$R/var/lib/suiftly" RUST_LOG=warn \
            exec "$R/opt/suiftly/current/suiftly" "$sub"
    ) >>"$S/$role.log" 2>&1 </dev/null &
    echo $! >"$S/$role.pid"
    ;;
*) echo "fake systemctl: unsupported $*" >&2; exit 1 ;;
esac
"#,
                state = state.display(),
                root = root.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch {
            _dir: dir,
            root,
            state,
        }
    }

    /// Runs `deploy/<script>` with `--root`; returns (success, stdout + stderr).
    fn run(&self, script: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("bash")
            .arg(repo().join("deploy").join(script))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env("SUIFTLY_SYSTEMCTL", self.state.join("systemctl"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok(&self, script: &str, args: &[&str]) -> String {
        let (ok, text) = self.run(script, args);
        if !ok {
            let logs: String = ["ingest", "manager", "api"]
                .iter()
                .filter_map(|r| {
                    let l = std::fs::read_to_string(self.state.join(format!("{r}.log"))).ok()?;
                    Some(format!("--- {r}.log:\n{l}"))
                })
                .collect();
            panic!("{script} {args:?} failed:\n{text}{logs}");
        }
        text
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Every path under the root with its type, mode, owner, size, mtime and link target.
    fn snapshot(&self) -> BTreeMap<String, String> {
        fn walk(base: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
            let m = std::fs::symlink_metadata(p).unwrap();
            let link = std::fs::read_link(p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            out.insert(
                p.strip_prefix(base).unwrap().display().to_string(),
                format!(
                    "{:o} {}:{} {} {} {link}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000
                ),
            );
            if m.is_dir() {
                for e in std::fs::read_dir(p).unwrap() {
                    walk(base, &e.unwrap().path(), out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }

    /// Sets `key = value` lines of the installed config (the operator edits it in place).
    fn edit_config(&self, from: &str, to: &str) {
        let p = self.path("/etc/suiftly/suiftly.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{from} not in the config");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for role in ["ingest", "manager", "api"] {
            if let Ok(pid) = std::fs::read_to_string(self.state.join(format!("{role}.pid")))
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                // SAFETY: kill(2) on a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

fn assert_noop(s: &Scratch, script: &str, args: &[&str]) {
    let before = s.snapshot();
    let text = s.ok(script, args);
    assert_eq!(
        last_line(&text),
        "nothing to do: everything was already in place",
        "second run of {script} was not a no-op:\n{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("change")),
        "{script} reported changes:\n{text}"
    );
    let after = s.snapshot();
    let diff: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(before.keys().filter(|k| !after.contains_key(*k)))
        .collect();
    assert!(diff.is_empty(), "second run of {script} touched {diff:?}");
}

fn pg_admin(pg: &PgCluster) -> String {
    pg.connection_string_for("postgres")
}

fn psql(conninfo: &str, sql: &str) -> String {
    let out = Command::new(tool("psql"))
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shipped units, installed by provision.sh next to the binary, pass `systemd-analyze
/// verify` (against a copy of the host's own units for the targets they name), and carry the
/// hardening and no secrets.
#[test]
fn provisioned_units_pass_systemd_analyze_verify() {
    let s = Scratch::new();
    let dry = s.ok("provision.sh", &["--dry-run"]);
    assert!(dry.contains("would   create system user suiftly"), "{dry}");
    assert_eq!(
        std::fs::read_to_string(s.path("/etc/passwd"))
            .unwrap()
            .lines()
            .count(),
        1,
        "--dry-run created the user"
    );
    assert!(!s.path("/etc/suiftly").exists(), "--dry-run created files");
    let first = s.ok("provision.sh", &[]);
    assert!(
        first.contains("change  enable unit suiftly-ingest.socket"),
        "{first}"
    );
    assert_noop(&s, "provision.sh", &[]);
    assert_noop(&s, "provision.sh", &["--dry-run"]);
    // The targets the units name, and the binary ExecStart= points at.
    let sys = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|p| Path::new(p).join("multi-user.target").exists())
        .expect("the host's systemd units (apt-get install systemd)");
    let dst = s.path("/usr/lib/systemd/system");
    std::fs::create_dir_all(&dst).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{sys}/."))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(s.path("/opt/suiftly/releases/t")).unwrap();
    std::os::unix::fs::symlink("releases/t", s.path("/opt/suiftly/current")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_suiftly"),
        s.path("/opt/suiftly/releases/t/suiftly"),
    )
    .unwrap();
    let units = [
        "suiftly-ingest.socket",
        "suiftly-ingest.service",
        "suiftly-manager.service",
        "suiftly-api.service",
    ];
    let out = Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(format!("--root={}", s.root.display()))
        .args(units)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the binary, verify fails: the check above is not vacuous.
    std::fs::remove_file(s.path("/opt/suiftly/releases/t/suiftly")).unwrap();
    let out = Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(format!("--root={}", s.root.display()))
        .arg("suiftly-api.service")
        .output()
        .unwrap();
    assert!(!out.status.success(), "verify passed without the binary");
    for u in units.iter().filter(|u| u.ends_with(".service")) {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(u)).unwrap();
        for want in [
            "User=suiftly",
            "StateDirectory=suiftly",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "Restart=on-failure",
            "EnvironmentFile=/etc/suiftly/suiftly.env",
        ] {
            assert!(text.contains(want), "{u} lacks {want:?}");
        }
        for secret in ["SECRET", "TOKEN", "PASSWORD", "DATABASE_URL="] {
            assert!(
                !text
                    .lines()
                    .any(|l| l.starts_with("Environment=") && l.contains(secret)),
                "{u} holds a secret ({secret})"
            );
        }
    }
    let env = s.path("/etc/suiftly/suiftly.env");
    let m = std::fs::metadata(&env).unwrap();
    assert_eq!(m.mode() & 0o777, 0o640, "the environment file is not 0640");
}

/// provision with a database, deploy (twice: the second is a no-op), then a release whose
/// health check fails: deploy exits 1, `current` points at the good release again and the
/// API answers.
#[test]
fn deploy_is_idempotent_and_rolls_back_an_unhealthy_release() {
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let s = Scratch::new();
    let admin = pg_admin(&pg);
    s.ok(
        "provision.sh",
        &[
            "--roles",
            "api",
            "--pg-admin",
            &admin,
            "--database-name",
            "prod",
        ],
    );
    assert_noop(
        &s,
        "provision.sh",
        &[
            "--roles",
            "api",
            "--pg-admin",
            &admin,
            "--database-name",
            "prod",
        ],
    );
    assert_eq!(
        psql(
            &admin,
            "SELECT count(*) FROM pg_database WHERE datname = 'prod'"
        )
        .trim(),
        "1"
    );
    let (api, api_metrics) = (common::free_port(), common::free_port());
    s.edit_config("127.0.0.1:9470", &format!("127.0.0.1:{api}"));
    s.edit_config("127.0.0.1:9471", &format!("127.0.0.1:{api_metrics}"));
    // Only the mock escrow exists: production runs it on a test network only.
    s.edit_config("# network = \"testnet\"", "network = \"testnet\"");
    let conf = s.path("/etc/suiftly/deploy.conf");
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("127.0.0.1:9470", &format!("127.0.0.1:{api}"))
        .replace("HEALTH_TIMEOUT_SECS=60", "HEALTH_TIMEOUT_SECS=30");
    std::fs::write(&conf, text).unwrap();

    let good = env!("CARGO_BIN_EXE_suiftly");
    let dry = s.ok("deploy.sh", &["--dry-run", good]);
    assert!(dry.contains("would   current -> releases/"), "{dry}");
    assert!(
        !s.path("/opt/suiftly/current").exists(),
        "--dry-run switched"
    );
    let first = s.ok("deploy.sh", &[good]);
    assert!(first.contains("health  api: "), "{first}");
    let good_rel = std::fs::read_link(s.path("/opt/suiftly/current")).unwrap();
    assert_eq!(
        common::http(api, "GET", "/health", None, None).0,
        200,
        "the API is not up after the deploy"
    );
    assert!(
        psql(
            &pg.connection_string_for("prod"),
            "SELECT count(*) FROM customers"
        )
        .trim()
            == "0",
        "deploy did not migrate the database"
    );
    assert_noop(&s, "deploy.sh", &[good]);

    // A release that migrates (it is the same program for `migrate`) but does not serve.
    let bad = s.state.join("bad-suiftly");
    std::fs::write(
        &bad,
        format!(
            "#!/bin/sh\ncase \"$*\" in *migrate*) exec {good} \"$@\" ;; esac\necho broken release >&2\nexit 1\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, text) = s.run("deploy.sh", &[bad.to_str().unwrap()]);
    assert!(!ok, "an unhealthy release deployed:\n{text}");
    assert!(text.contains("rollback: release"), "{text}");
    assert!(text.contains("error: rolled back to"), "{text}");
    assert_eq!(
        std::fs::read_link(s.path("/opt/suiftly/current")).unwrap(),
        good_rel,
        "current does not point at the good release after the rollback"
    );
    assert_eq!(common::http(api, "GET", "/health", None, None).0, 200);
    let calls = std::fs::read_to_string(s.state.join("calls")).unwrap();
    assert_eq!(
        calls
            .lines()
            .filter(|l| *l == "restart suiftly-api.service")
            .count(),
        3,
        "restarts: first deploy, bad release, rollback:\n{calls}"
    );
}

/// Tables as text, row for row (every table, sorted), to compare two databases.
fn tables(conninfo: &str) -> BTreeMap<String, String> {
    let names = psql(
        conninfo,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    names
        .lines()
        .map(|t| {
            (
                t.to_string(),
                psql(
                    conninfo,
                    &format!("SELECT x::text FROM \"{t}\" x ORDER BY 1"),
                ),
            )
        })
        .collect()
}

/// Backup (twice: the second writes nothing) → restore into a fresh database (twice: the
/// second does nothing) → every table equal row for row, `suiftly audit` passes on the copy;
/// the spool of the stopped ingestor comes back byte for byte.
#[test]
fn backup_then_restore_into_a_fresh_database_gives_the_same_tables() {
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let s = Scratch::new();
    let admin = pg_admin(&pg);
    s.ok(
        "provision.sh",
        &[
            "--roles",
            "ingest",
            "--pg-admin",
            &admin,
            "--database-name",
            "prod",
        ],
    );
    // As the application's role (the tables are its own, as on a host).
    let db = format!("{} user=suiftly", pg.connection_string_for("prod"));
    // Schema by the binary; raw rows and settled aggregates by a real ingestor with metering
    // (metering settled everything before ten minutes ago; lines land in the minutes after,
    // and settle within seconds with the short lateness below).
    let cmd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args(args)
            .env("DATABASE_URL", &db)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = cmd(&["migrate"]);
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = common::now_ms();
    let base = now - now % 60_000 - 10 * 60_000;
    psql(
        &db,
        &format!(
            "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before) \
             VALUES (1, 0, 0, to_timestamp({base}::float8 / 1000))"
        ),
    );
    let work = tempfile::tempdir().unwrap();
    let (udp, mport, aport) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let cfg = work.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[batch]\nmax_age_ms = 50\n\
             [aggregate]\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
             [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\nframing = \"raw\"\npayload = \"sf1\"\n",
            work.path().join("data").display()
        ),
    )
    .unwrap();
    let mut ing = common::Suiftly::new(cfg, db.clone(), mport, aport);
    ing.start();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    const LINES: u64 = 2_000;
    for seq in 0..LINES {
        // Spread over minutes 1..8 after `base`, customers 1..5, two services.
        let ts = base + 60_000 + seq * 7 * 60_000 / LINES;
        let line = format!(
            "sf1 {}.{:03} fe 1 17 {} 2 {} - {seq} - 1 0 10.1.2.3 200 {} 0 1 1 2 3 1 -- /v1",
            ts / 1000,
            ts % 1000,
            1 + seq % 2,
            1 + seq % 5,
            100 + seq % 900
        );
        tx.send_to(line.as_bytes(), ("127.0.0.1", udp)).unwrap();
        if seq % 100 == 99 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let t0 = std::time::Instant::now();
    let settled = || {
        psql(
            &db,
            "SELECT (extract(epoch FROM settled_before) * 1000)::bigint FROM aggregate_state",
        )
        .trim()
        .parse::<u64>()
        .unwrap()
    };
    while settled() < base + 9 * 60_000 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(90),
            "metering did not settle the test's minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ing.stop();
    let audit = |conninfo: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args(["audit", "--from", "-1h", "--to", "now"])
            .env("DATABASE_URL", conninfo)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains(", 0 differences"),
            "audit: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let compared: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("audit: ")?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no summary line: {text}"));
        assert!(compared > 0, "the audit compared nothing: {text}");
        text.lines()
            .filter(|l| l.starts_with("audit: ") && l.contains("differences"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let source_audit = audit(&db);
    eprintln!("source {source_audit}");
    psql(
        &db,
        "INSERT INTO customers (customer_id, wallet_address, current_balance_usd_cents) VALUES \
           (1, '0x' || repeat('a', 64), 12345), (2, '0x' || repeat('b', 64), 0); \
         INSERT INTO service_instances (customer_id, service_type, tier, is_enabled) VALUES \
           (1, 1, 'pro', true), (2, 2, 'starter', false); \
         INSERT INTO api_keys (customer_id, service_type, fingerprint, encrypted_key, key_preview, \
           seal_network, seal_access, seal_source, proc_group) VALUES \
           (1, 1, 42, '\\x0102', 'abc…', 1, 0, 0, 3);",
    );
    // A spool of a stopped ingestor: segments as they would be left on disk.
    let spool = s.path("/var/lib/suiftly/spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(
        spool.join("00000000000000000000.seg"),
        b"SPRC segment bytes",
    )
    .unwrap();
    let before = tables(&db);
    assert!(before["haproxy_raw_logs"].lines().count() > 1_000);
    assert!(!before["stats_per_min"].is_empty(), "nothing was metered");
    assert_eq!(before["customers"].lines().count(), 2);

    let dry = s.ok("backup.sh", &["--dry-run", "--spool"]);
    assert!(dry.contains("would   write backup"), "{dry}");
    let backups = s.path("/var/backups/suiftly");
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        0,
        "--dry-run wrote a backup"
    );
    let first = s.ok("backup.sh", &["--spool"]);
    assert!(first.contains("change  write backup"), "{first}");
    assert_noop(&s, "backup.sh", &["--spool"]);
    let backup = std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    psql(&admin, "CREATE DATABASE restored");
    let fresh = pg.connection_string_for("restored");
    let t = Scratch::new();
    t.ok("provision.sh", &["--roles", "ingest"]);
    let from = backup.to_str().unwrap();
    let dry = t.ok(
        "restore.sh",
        &["--dry-run", "--from", from, "--database", &fresh, "--spool"],
    );
    assert!(dry.contains("would   restore the database"), "{dry}");
    assert_eq!(
        psql(
            &fresh,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .trim(),
        "0",
        "--dry-run restored"
    );
    let text = t.ok(
        "restore.sh",
        &["--from", from, "--database", &fresh, "--spool"],
    );
    assert!(text.contains("change  restore the database"), "{text}");
    assert_noop(
        &t,
        "restore.sh",
        &["--from", from, "--database", &fresh, "--spool"],
    );
    let after = tables(&fresh);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the restored copy has other tables"
    );
    for (name, rows) in &before {
        assert!(
            after[name] == *rows,
            "table {name} differs after the restore"
        );
    }
    assert_eq!(
        std::fs::read(t.path("/var/lib/suiftly/spool/00000000000000000000.seg")).unwrap(),
        b"SPRC segment bytes"
    );
    // Restoring over a database that holds something else is refused.
    let (ok, text) = t.run("restore.sh", &["--from", from, "--database", &db]);
    assert!(
        !ok && text.contains("restore into a fresh database"),
        "{text}"
    );

    assert_eq!(
        audit(&fresh),
        source_audit,
        "the audit of the restored copy differs from the source's"
    );
    // The billing audit (issue 11) of this month: same report on the copy as on the source.
    let billing = |conninfo: &str| {
        let month = psql(
            conninfo,
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args(["audit", "billing", "--month", month.trim()])
            .env("DATABASE_URL", conninfo)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "audit billing: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let source_billing = billing(&db);
    eprintln!("source billing audit: {source_billing}");
    assert_eq!(billing(&fresh), source_billing);
}

/// `suiftly check-config` finds each kind of problem it claims to (and exits 1), and passes a
/// production setup once they are fixed.
#[test]
fn check_config_reports_ports_directories_database_and_secrets() {
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("state");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let (udp, api, apim) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let cfg = tmp.path().join("suiftly.toml");
    let write = |metrics: u16, origin: &str, escrow: &str| {
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n\
                 [api]\nlisten = \"127.0.0.1:{api}\"\nmetrics_listen = \"127.0.0.1:{apim}\"\ndashboard_origin = \"{origin}\"\n\
                 [[listener]]\nname = \"udp\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\n{escrow}",
                data.display(),
                common::free_port()
            ),
        )
        .unwrap()
    };
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_suiftly"));
        c.arg("--config").arg(&cfg).arg("check-config").args(args);
        for v in [
            "SUIFTLY_JWT_SECRET",
            "SUIFTLY_API_KEY_SECRET",
            "SUIFTLY_KEY_ENCRYPTION_KEY",
            "SUIFTLY_OPERATOR_TOKEN",
            "SUIFTLY_API_PRODUCTION",
            "MOCK_AUTH",
        ] {
            c.env_remove(v);
        }
        c.env("DATABASE_URL", pg.connection_string())
            .env("RUST_LOG", "off");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    write(busy_port, "http://localhost:5173", "");
    let (ok, text) = run(&["--production", "--service-user", "nobody"], &[]);
    assert!(!ok, "{text}");
    for want in [
        &format!("FAIL  metrics.listen: tcp 127.0.0.1:{busy_port} is in use") as &str,
        &format!("ok    listener udp: udp 127.0.0.1:{udp} is free"),
        &format!(
            "FAIL  data_dir: {} is not writable by nobody",
            data.display()
        ),
        "FAIL  migrations: the database has no schema yet",
        "FAIL  api secrets: SUIFTLY_JWT_SECRET must be set in production mode",
        "FAIL  api.dashboard_origin",
        "FAIL  escrow: the mock escrow is refused in production mode",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Fixed: port, directory owner (root checks as itself), migrations, secrets, origin.
    drop(busy);
    write(
        common::free_port(),
        "https://app.example.com",
        "[escrow]\nnetwork = \"testnet\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .arg("migrate")
        .env("DATABASE_URL", pg.connection_string())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success());
    let hex = |b: u8| format!("{b:02x}").repeat(32);
    let (jwt, aks, kek, tok) = (hex(0x5a), hex(0x3c), hex(0x7e), hex(0x41));
    let secrets = [
        ("SUIFTLY_JWT_SECRET", jwt.as_str()),
        ("SUIFTLY_API_KEY_SECRET", aks.as_str()),
        ("SUIFTLY_KEY_ENCRYPTION_KEY", kek.as_str()),
        ("SUIFTLY_OPERATOR_TOKEN", tok.as_str()),
    ];
    let (ok, text) = run(&["--production"], &secrets);
    assert!(ok, "{text}");
    assert!(text.contains("ok    migrations: all "), "{text}");
    assert!(text.contains(", 0 failures"), "{text}");
}
