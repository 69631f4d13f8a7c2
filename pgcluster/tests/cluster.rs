//! Integration tests: these need the machine's PostgreSQL server binaries and
//! fail (never skip) when a cluster cannot start.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgcluster::{ClusterOptions, Error, PgCluster};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Run statements, then a query returning one i64 column per row.
fn query(conn: &str, setup: &str, sql: &str) -> Result<Vec<i64>, tokio_postgres::Error> {
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await?;
        let handle = tokio::spawn(connection);
        if !setup.is_empty() {
            client.batch_execute(setup).await?;
        }
        let rows = client.query(sql, &[]).await?;
        drop(client);
        let _ = handle.await;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
    })
}

fn select_one(conn: &str) -> i64 {
    query(conn, "", "select 1::int8").expect("select 1")[0]
}

fn postmaster_pid(data_dir: &Path) -> i32 {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Alive and not a zombie (pid 1 here may not reap orphans).
fn process_running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|x| x.1.trim_start())
                .unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A parent directory the cluster user can traverse, on tmpfs when there is
/// one (a busy disk makes each checkpoint of a persistent cluster slow).
fn persistent_parent() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("pgcluster-test-")
        .tempdir_in(base)
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// Persistent-cluster options without fsync (disk syncs make a start take
/// seconds on a busy machine; only `persistent_data_dir_is_reused` keeps it).
fn no_sync(data: &Path) -> ClusterOptions {
    ClusterOptions {
        fsync: false,
        ..ClusterOptions::new(data)
    }
}

#[test]
fn temporary_cluster_answers_select_1() {
    let t = Instant::now();
    let pg = PgCluster::temporary().expect("temporary cluster must start");
    eprintln!("temporary cluster started in {:?}", t.elapsed());
    assert!(pg.is_running());
    assert_eq!(select_one(&pg.connection_string()), 1);
    assert_eq!(select_one(&pg.url()), 1, "url {}", pg.url());
    // The named database exists and is the one we are connected to.
    let cs = pg.connection_string();
    assert!(cs.contains("dbname=suiftly"), "{cs}");
    assert!(cs.contains("user=postgres"), "{cs}");
    let n = query(
        &cs,
        "",
        "select count(*) from pg_database where datname = current_database() and datname = 'suiftly'",
    )
    .unwrap();
    assert_eq!(n, vec![1]);

    // Private socket directory, owned by the cluster user, no TCP.
    let md = fs::metadata(pg.socket_dir()).unwrap();
    assert_eq!(md.mode() & 0o777, 0o700);
    if is_root() {
        assert_ne!(md.uid(), 0, "socket dir must belong to the postgres user");
    }
    assert!(
        pg.socket_dir()
            .join(format!(".s.PGSQL.{}", pg.port()))
            .exists()
    );
    let listen = query(
        &cs,
        "",
        "select length(current_setting('listen_addresses'))::int8",
    )
    .unwrap();
    assert_eq!(listen, vec![0]);
    let fsync = query(
        &cs,
        "",
        "select (current_setting('fsync') = 'off')::int::int8",
    )
    .unwrap();
    assert_eq!(fsync, vec![1]);
    assert!(pg.log_file().exists());
    assert!(pg.tcp_url().is_none());
}

#[test]
fn two_clusters_run_concurrently() {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| PgCluster::temporary().expect("cluster must start")))
        .collect();
    let clusters: Vec<PgCluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    assert_ne!(clusters[0].socket_dir(), clusters[1].socket_dir());
    assert_ne!(clusters[0].port(), clusters[1].port());
    for (i, pg) in clusters.iter().enumerate() {
        query(
            &pg.connection_string(),
            &format!("create table t (v int8); insert into t values ({i})"),
            "select v from t",
        )
        .unwrap();
    }
    for (i, pg) in clusters.iter().enumerate() {
        let v = query(&pg.connection_string(), "", "select v from t").unwrap();
        assert_eq!(v, vec![i as i64]);
    }
}

#[test]
fn tcp_listener_on_loopback() {
    let pg = PgCluster::temporary_with(|o| {
        o.tcp = true;
        o.database = "other db".into();
        o.extra_settings.push(("work_mem".into(), "8MB".into()));
    })
    .expect("cluster must start");
    let url = pg.tcp_url().expect("tcp url");
    assert!(url.starts_with("postgresql://postgres@127.0.0.1:"), "{url}");
    assert_eq!(select_one(&url), 1);
    assert_eq!(select_one(&pg.connection_string()), 1);
    let wm = query(
        &pg.connection_string(),
        "",
        "select (current_setting('work_mem') = '8MB' and current_database() = 'other db')::int::int8",
    )
    .unwrap();
    assert_eq!(wm, vec![1]);
}

#[test]
fn stop_and_start_again_keep_data() {
    let mut pg = PgCluster::temporary().expect("cluster must start");
    let cs = pg.connection_string();
    let (port, sock) = (pg.port(), pg.socket_dir().to_path_buf());
    query(
        &cs,
        "create table t (v int8); insert into t values (7)",
        "select v from t",
    )
    .unwrap();
    let pid = postmaster_pid(pg.data_dir());
    pg.stop().unwrap();
    pg.stop().unwrap(); // idempotent
    assert!(!pg.is_running());
    wait_until("postmaster exit", Duration::from_secs(10), || {
        !process_running(pid)
    });
    assert!(query(&cs, "", "select 1::int8").is_err());
    pg.start_again().unwrap();
    pg.start_again().unwrap(); // idempotent
    assert_eq!((pg.port(), pg.socket_dir()), (port, sock.as_path()));
    assert_eq!(pg.connection_string(), cs);
    assert_eq!(query(&cs, "", "select v from t").unwrap(), vec![7]);
}

#[test]
fn kill_then_start_again_recovers() {
    let mut pg = PgCluster::temporary().expect("cluster must start");
    let cs = pg.connection_string();
    query(
        &cs,
        "create table t (v int8); insert into t select generate_series(1, 1000)",
        "select count(*) from t",
    )
    .unwrap();
    pg.kill().unwrap();
    assert!(query(&cs, "", "select 1::int8").is_err());
    pg.start_again().unwrap();
    assert_eq!(
        query(&cs, "", "select count(*) from t").unwrap(),
        vec![1000]
    );
    let log = fs::read_to_string(pg.log_file()).unwrap();
    assert!(
        log.contains("not properly shut down") || log.contains("automatic recovery"),
        "expected crash recovery in the log:\n{log}"
    );
}

#[test]
fn drop_removes_directory_and_server() {
    let pg = PgCluster::temporary().expect("cluster must start");
    let data = pg.data_dir().to_path_buf();
    let sock = pg.socket_dir().to_path_buf();
    let pid = postmaster_pid(&data);
    assert!(process_running(pid));
    drop(pg);
    assert!(!data.exists(), "{} still exists", data.display());
    assert!(!sock.exists(), "{} still exists", sock.display());
    wait_until("postmaster exit", Duration::from_secs(10), || {
        !process_running(pid)
    });
}

#[test]
fn persistent_data_dir_is_reused() {
    let parent = persistent_parent();
    let data = parent.path().join("nested/pgdata");
    let opts = ClusterOptions::new(&data);
    {
        let pg = PgCluster::start(opts.clone()).expect("persistent cluster must start");
        let fsync = query(
            &pg.connection_string(),
            "create table t (v int8); insert into t values (42)",
            "select (current_setting('fsync') = 'on')::int::int8",
        )
        .unwrap();
        assert_eq!(fsync, vec![1]);
    }
    // Stopped but kept.
    assert!(data.join("PG_VERSION").exists());
    assert!(!data.join("postmaster.pid").exists());
    let pg = PgCluster::start(opts).expect("persistent cluster must restart");
    assert_eq!(
        query(&pg.connection_string(), "", "select v from t").unwrap(),
        vec![42]
    );
}

#[test]
fn stale_pid_file_is_handled() {
    let parent = persistent_parent();
    let data = parent.path().join("pgdata");
    let mut pg = PgCluster::start(no_sync(&data)).expect("cluster must start");
    query(
        &pg.connection_string(),
        "create table t (v int8); insert into t values (1)",
        "select v from t",
    )
    .unwrap();
    pg.stop().unwrap();
    drop(pg);
    // A pid file naming a live process that is not our postmaster (pid 1),
    // as after a reboot reused the pid.
    let pid_file = data.join("postmaster.pid");
    fs::write(
        &pid_file,
        format!("1\n{}\n0\n5432\n/tmp\n\n  0 0\nready\n", data.display()),
    )
    .unwrap();
    let pg = PgCluster::start(no_sync(&data)).expect("restart over stale pid file");
    assert_eq!(
        query(&pg.connection_string(), "", "select v from t").unwrap(),
        vec![1]
    );
    drop(pg);
    // A pid file naming a dead process.
    fs::write(&pid_file, "999999999\n").unwrap();
    let pg = PgCluster::start(no_sync(&data)).expect("restart over dead pid file");
    assert_eq!(select_one(&pg.connection_string()), 1);
}

#[test]
fn untraversable_parent_is_a_clear_error() {
    if !is_root() {
        return; // only root switches users; nothing to check otherwise
    }
    let parent = tempfile::tempdir().unwrap();
    fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let err = PgCluster::start(ClusterOptions::new(parent.path().join("pgdata")))
        .expect_err("postgres cannot reach a dir under a 0700 root dir");
    assert!(matches!(err, Error::NotTraversable { .. }), "{err:?}");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("chmod o+x"), "{msg}");
    assert!(msg.contains(&parent.path().display().to_string()), "{msg}");
}

#[test]
fn non_cluster_dir_is_a_clear_error() {
    let parent = persistent_parent();
    fs::write(parent.path().join("stray-file"), "x").unwrap();
    let err = PgCluster::start(ClusterOptions::new(parent.path()))
        .expect_err("a non-empty non-cluster dir must be refused");
    assert!(matches!(err, Error::NotACluster { .. }), "{err:?}");
    assert!(err.to_string().contains("not a postgresql cluster"));
}

#[test]
fn bad_setting_reports_log_tail() {
    let err = PgCluster::temporary_with(|o| {
        o.extra_settings
            .push(("no_such_setting_xyz".into(), "1".into()))
    })
    .expect_err("an unknown setting must fail the start");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, Error::Start { .. }), "{err:?}");
    assert!(msg.contains("no_such_setting_xyz"), "{msg}");
    assert!(msg.starts_with("postgresql failed to start"), "{msg}");
}

const HELPER_ENV: &str = "PGCLUSTER_TEST_HELPER";

/// Not a test on its own: run as a child process by
/// `killed_owner_leaves_nothing_behind`, it starts a cluster, reports it and
/// waits to be killed. Ignored, so a normal run reports it as ignored instead
/// of counting an empty pass; the child runs it with `--ignored`.
#[test]
#[ignore = "helper process of the killed_owner_* tests"]
fn helper_owner_process() {
    let persistent = std::env::var(HELPER_ENV)
        .unwrap_or_else(|_| panic!("run only by the killed_owner_* tests ({HELPER_ENV} unset)"));
    let pg = if persistent.is_empty() {
        PgCluster::temporary().expect("cluster must start")
    } else {
        PgCluster::start(no_sync(Path::new(&persistent))).expect("cluster must start")
    };
    println!(
        "PGCLUSTER_HELPER {} {}",
        postmaster_pid(pg.data_dir()),
        pg.data_dir().display()
    );
    std::thread::sleep(Duration::from_secs(120));
}

fn spawn_helper(arg: &str) -> (std::process::Child, i32, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_owner_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, arg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = loop {
        let line = lines
            .next()
            .expect("helper exited before reporting")
            .unwrap();
        // libtest may print "test helper_owner_process ... " before it.
        if let Some((_, rest)) = line.split_once("PGCLUSTER_HELPER ") {
            break rest.to_owned();
        }
    };
    let (pid, dir) = line.split_once(' ').unwrap();
    (child, pid.parse().unwrap(), PathBuf::from(dir))
}

#[test]
fn killed_owner_leaves_nothing_behind() {
    let (mut child, pid, data) = spawn_helper("");
    assert!(process_running(pid));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    wait_until(
        "watchdog to stop the server",
        Duration::from_secs(30),
        || !process_running(pid),
    );
    wait_until(
        "watchdog to remove the dir",
        Duration::from_secs(30),
        || !data.exists(),
    );
}

#[test]
fn killed_owner_persistent_cluster_restarts() {
    let parent = persistent_parent();
    let data = parent.path().join("pgdata");
    let (mut child, pid, reported) = spawn_helper(data.to_str().unwrap());
    assert_eq!(reported, fs::canonicalize(&data).unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(
        "watchdog to stop the server",
        Duration::from_secs(30),
        || !process_running(pid),
    );
    assert!(
        data.join("PG_VERSION").exists(),
        "persistent data must stay"
    );
    let pg = PgCluster::start(no_sync(&data)).expect("restart after owner died");
    assert_eq!(select_one(&pg.connection_string()), 1);
}

#[test]
fn server_left_running_is_stopped_and_restarted() {
    let parent = persistent_parent();
    let data = parent.path().join("pgdata");
    let pg = PgCluster::start(no_sync(&data)).expect("cluster must start");
    let old_pid = postmaster_pid(pg.data_dir());
    // Leak it: the server keeps running with nobody to stop it (until this
    // process exits and the watchdog notices).
    std::mem::forget(pg);
    let pg = PgCluster::start(no_sync(&data)).expect("start over a running server");
    assert_ne!(postmaster_pid(pg.data_dir()), old_pid);
    assert!(!process_running(old_pid));
    assert_eq!(select_one(&pg.connection_string()), 1);
}
