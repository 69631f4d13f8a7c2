//! The storage-mode matrix from the tests' side: `SUIFTLY_TEST_STORAGE=timescaledb` makes
//! every temporary cluster preload TimescaleDB (pgcluster), so migration V1 makes the raw table
//! a hypertable. [`expect`] checks that the database under test really uses the storage the run
//! asked for, and prints it with the test's output.

use pgcluster::timescaledb::TEST_STORAGE_ENV;
use suiftly_ingest::db::Storage;

/// The mode this test run asked for: `native` (unset) or `timescaledb`.
pub fn mode() -> String {
    match std::env::var(TEST_STORAGE_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => "native".to_owned(),
    }
}

/// Panics unless the migrated database at `conninfo` uses the storage [`mode`] names.
pub fn expect(conninfo: &str) {
    // On a thread of its own: callers may be inside a tokio runtime (async tests start the
    // binary through the same harness), where a nested `block_on` panics.
    let conninfo = conninfo.to_owned();
    let info = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                    .await
                    .expect("connecting to the test database");
                tokio::spawn(conn);
                suiftly_ingest::timescale::check(&client)
                    .await
                    .expect("the storage check")
            })
    })
    .join()
    .expect("the storage check thread");
    let want = match mode().as_str() {
        "timescaledb" => Storage::Timescale,
        _ => Storage::Native,
    };
    eprintln!("storage ({TEST_STORAGE_ENV}={}): {info}", mode());
    assert_eq!(info.storage, want, "{TEST_STORAGE_ENV}={}", mode());
}
