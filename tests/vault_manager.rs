//! The vault wired into the manager (`suiftly manager`, a real process) with a real HAProxy and
//! PostgreSQL: a key inserted in the database reaches a gateway that was down when the version
//! was written (the retry loop, long before the next periodic cycle), a revocation reaches it
//! through the V21 notification (a triggered cycle), `/manager/status` and `/metrics` show the
//! vault step, and SIGTERM stops the manager with its retry loop.

mod common;
mod gateway;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{Gateway, LogSink, insert_key, request, spawn_origin, wait_until};
use pgcluster::PgCluster;

#[test]
fn the_manager_regenerates_pushes_retries_and_stops_with_its_vault_step() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start postgresql: {e}"));
    let conninfo = pg.connection_string();
    let tmp = tempfile::tempdir().unwrap();
    let vault_dir = tmp.path().join("vault");
    // The gateway loads its own copy (as on a gateway host); the push names that path.
    let gw_map = tmp.path().join("gw.map");
    std::fs::write(&gw_map, "").unwrap();
    let admin_sock = tmp.path().join("admin.sock");
    let admin = common::free_port();
    let cfg = tmp.path().join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{data}\"\n\
             [manager]\nwatermark = \"clock\"\ncycle_interval_ms = 600000\nlease_ms = 3000\n\
             renew_interval_ms = 500\nidle_in_transaction_ms = 1500\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [vault]\ndir = \"{vault}\"\nretry_interval_ms = 300\npush_timeout_ms = 1000\npush_attempts = 1\n\
             [[vault.gateway]]\nname = \"gw1\"\nsocket = \"unix:{sock}\"\nmap = \"{map}\"\n",
            data = tmp.path().join("data").display(),
            vault = vault_dir.display(),
            sock = admin_sock.display(),
            map = gw_map.display(),
        ),
    )
    .unwrap();
    let mut manager = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .args(["--config", cfg.to_str().unwrap(), "manager"])
        .env("DATABASE_URL", &conninfo)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until("manager admin endpoint", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    wait_until("leadership", Duration::from_secs(60), || {
        common::http(admin, "GET", "/manager/status", None, None)
            .1
            .contains("\"leader\":true")
    });

    // A paying customer with grpc pro and one key, by SQL: the V21 triggers notify the manager.
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    });
    let (key_id, key) = rt.block_on(async {
        client
            .batch_execute(&format!(
                "INSERT INTO customers (customer_id, wallet_address, current_balance_usd_cents)
                 VALUES (31, '0x{}', 1000000);
                 INSERT INTO mock_escrow_accounts (account, balance_cents) VALUES (31, 1000000);
                 INSERT INTO service_instances (customer_id, service_type, tier, is_enabled, config)
                 VALUES (31, 2, 'pro', true, '{{\"tier\":\"pro\",\"burst\":false}}');",
                "cd".repeat(32)
            ))
            .await
            .unwrap();
        insert_key(&client, 31, 7, suiftly_api::DEV_KEY_ENCRYPTION_KEY).await
    });
    let seq_with_key = || -> i64 {
        rt.block_on(client.query_one(
            "SELECT COALESCE(max(seq), 0) FROM vault_versions WHERE entries >= 1",
            &[],
        ))
        .unwrap()
        .get(0)
    };
    wait_until(
        "a version with the key (notified cycle)",
        Duration::from_secs(30),
        || seq_with_key() >= 1,
    );
    let failures = |rt: &tokio::runtime::Runtime| -> i32 {
        rt.block_on(client.query_opt(
            "SELECT consecutive_failures FROM vault_gateways WHERE gateway = 'gw1'",
            &[],
        ))
        .unwrap()
        .map(|r| r.get(0))
        .unwrap_or(0)
    };
    wait_until(
        "the failed push is recorded",
        Duration::from_secs(30),
        || failures(&rt) >= 1,
    );
    assert!(vault_dir.join("suiftly-keys.map").exists());
    assert!(vault_dir.join("ma_vault.csv").exists());

    // The gateway comes up on its (empty) copy: the retry loop pushes the live version long
    // before the next periodic cycle (10 min).
    let origin = spawn_origin();
    let logs = LogSink::bind();
    let gw = Gateway::start(tmp.path(), &gw_map, logs.port(), origin);
    assert_eq!(gw.admin_sock, admin_sock);
    let t0 = Instant::now();
    wait_until(
        "the retry pushes to the gateway",
        Duration::from_secs(30),
        || request(gw.fe_port, "/ok", Some(&key)).0 == 200,
    );
    eprintln!("gateway caught up {:?} after it started", t0.elapsed());
    assert_eq!(failures(&rt), 0);

    // Revoke by SQL (what the API's DELETE /keys/{id} commits): notified cycle → 403 revoked.
    let t0 = Instant::now();
    rt.block_on(client.execute(
        "UPDATE api_keys SET is_active = false, revoked_at = now() WHERE key_id = $1",
        &[&key_id],
    ))
    .unwrap();
    let mut n = 0;
    wait_until(
        "the revocation reaches the gateway",
        Duration::from_secs(30),
        || {
            n += 1;
            request(gw.fe_port, &format!("/r{n}"), Some(&key)).0 == 403
        },
    );
    eprintln!("revocation (SQL commit → first 403): {:?}", t0.elapsed());
    let (status, body) = request(gw.fe_port, "/revoked", Some(&key));
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"error":"api_key_revoked"}"#)
    );

    // The manager reports the step; the metrics carry the gateway's applied version.
    let (code, st) = common::http(admin, "GET", "/manager/status", None, None);
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    let vault = &st["tasks"]["vault"];
    assert!(vault["runs"].as_u64().unwrap() >= 2, "{vault}");
    assert_eq!(vault["last_error"], serde_json::Value::Null, "{vault}");
    let seq = vault["last_report"]["seq"].as_u64().unwrap();
    assert_eq!(vault["last_report"]["gateways"][0]["ok"], true, "{vault}");
    let (_, metrics) = common::http(admin, "GET", "/metrics", None, None);
    assert!(
        metrics.lines().any(
            |l| l.starts_with("suiftly_vault_applied_seq{gateway=\"gw1\"}")
                && l.ends_with(&format!(" {seq}"))
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("suiftly_vault"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let shown = gw.cli(&format!("show map {}", gw_map.display()));
    let marker = shown
        .lines()
        .find(|l| l.contains("@suiftly-vault "))
        .expect("marker entry");
    assert_eq!(
        marker.rsplit(',').nth(1),
        Some(seq.to_string().as_str()),
        "the gateway holds seq {seq}: {marker}"
    );

    // SIGTERM: the manager (and its retry loop) stop, the process exits cleanly.
    unsafe { libc::kill(manager.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = manager.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the manager did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
