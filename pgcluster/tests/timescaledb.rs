//! The embedded default's TimescaleDB choice against the machine's real installation: whatever
//! is installed here, the reported status must be what the server actually does.

use std::path::Path;

use pgcluster::timescaledb::{self, Status};
use pgcluster::{ClusterOptions, PgCluster};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `SHOW shared_preload_libraries`, then whether `CREATE EXTENSION timescaledb` worked (its
/// error otherwise).
fn probe(conn: &str) -> (String, Result<String, String>) {
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let handle = tokio::spawn(connection);
        let preload: String = client
            .query_one("SELECT current_setting('shared_preload_libraries')", &[])
            .await
            .unwrap()
            .get(0);
        let created = match client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .await
        {
            Ok(()) => Ok(client
                .query_one(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
                    &[],
                )
                .await
                .unwrap()
                .get(0)),
            Err(e) => Err(e.to_string()),
        };
        drop(client);
        let _ = handle.await;
        (preload, created)
    })
}

#[test]
fn embedded_start_reports_what_the_server_does() {
    let parent = tempfile::Builder::new()
        .prefix("pgcluster-ts-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            Path::new("/dev/shm")
        } else {
            Path::new("/tmp")
        })
        .unwrap();
    // The cluster user must traverse it.
    std::fs::set_permissions(
        parent.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let installed = timescaledb::installed().expect("binaries");
    let opts = ClusterOptions {
        fsync: false,
        ..ClusterOptions::new(parent.path().join("data"))
    };
    let (pg, status) =
        PgCluster::start_preferring_timescaledb(opts).expect("the embedded default must start");
    let (preload, created) = probe(&pg.connection_string());
    eprintln!("installed: {installed:?}; status: {status}");
    match &status {
        Status::Preloaded { version } => {
            assert_eq!(Some(version), installed.as_ref().map(|i| &i.version));
            assert!(pg.preloads_timescaledb());
            assert_eq!(preload, "timescaledb");
            assert_eq!(created.as_ref(), Ok(version), "{created:?}");
        }
        Status::NotInstalled => {
            assert!(installed.is_none());
            assert!(!pg.preloads_timescaledb());
            assert_eq!(preload, "");
        }
        Status::Unloadable { version, reason } => {
            assert_eq!(Some(version), installed.as_ref().map(|i| &i.version));
            assert!(reason.contains("timescaledb"), "{reason}");
            assert!(!pg.preloads_timescaledb());
            assert_eq!(preload, "");
            // Without the preload the extension cannot be created: the reason matters.
            assert!(created.is_err(), "{created:?}");
        }
    }
}
