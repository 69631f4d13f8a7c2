//! The vault stage against a real PostgreSQL and a real HAProxy: what the database says about
//! keys, services and customers reaches the gateway, versions are recorded, a gateway that was
//! down catches up through `retry_failed`, and a wiped vault directory continues the numbering.

mod gateway;

use std::time::Duration;

use chrono::Utc;
use gateway::{Gateway, LogSink, insert_key, request, spawn_origin};
use pgcluster::PgCluster;
use suiftly_vault::{KeyCipher, Secret};
use suiftly_vault_stage::{VaultSettings, VaultStage};

const KEK: [u8; 32] = [42; 32];

#[test]
fn database_changes_reach_the_gateway() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let mut client = rt
        .block_on(suiftly_ingest::writer::connect(&pg.connection_string()))
        .unwrap();
    rt.block_on(suiftly_migrations::migrate(&mut client))
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let vault_dir = tmp.path().join("vault");
    let map_path = vault_dir.join("suiftly-keys.map");
    let admin_sock = tmp.path().join("admin.sock");
    let mut settings = VaultSettings::new(vault_dir.clone());
    settings.policy = suiftly_vault::runtime::PushPolicy {
        io_timeout: Duration::from_millis(1_000),
        attempts: 1,
        backoff: Duration::from_millis(200),
    };
    settings.gateways = vec![suiftly_vault::runtime::Gateway {
        name: "gw1".into(),
        endpoint: suiftly_vault::runtime::Endpoint::Unix(admin_sock.clone()),
        map: map_path.to_str().unwrap().into(),
    }];
    let stage = VaultStage::new(
        &settings,
        [100, 500, 2_000],
        KeyCipher::new(&Secret::from_bytes(KEK)),
    );

    let (key_a, key_b) = rt.block_on(async {
        client
            .batch_execute(&format!(
                "INSERT INTO customers (customer_id, wallet_address) VALUES (777, '0x{}');
                 INSERT INTO service_instances (customer_id, service_type, tier, is_enabled, config)
                 VALUES (777, 2, 'pro', true, '{{\"tier\":\"pro\",\"burst\":true}}');",
                "ab".repeat(32)
            ))
            .await
            .unwrap();
        (
            insert_key(&client, 777, 1, KEK).await,
            insert_key(&client, 777, 2, KEK).await,
        )
    });

    // --- cycle 1: written, but the gateway is not running yet ----------------------------------
    let r1 = rt.block_on(stage.run_once(&client, Utc::now())).unwrap();
    assert!(r1.written);
    assert_eq!(
        (r1.seq, r1.keys, r1.csv_rows, r1.decrypt_failures),
        (1, 2, 2, 0)
    );
    assert!(!r1.gateways[0].ok, "{:?}", r1.gateways);
    let failures: i32 = rt
        .block_on(client.query_one(
            "SELECT consecutive_failures FROM vault_gateways WHERE gateway = 'gw1'",
            &[],
        ))
        .unwrap()
        .get(0);
    assert_eq!(failures, 1);

    // --- the gateway starts on the file; the retry finds it current ----------------------------
    let origin = spawn_origin();
    let logs = LogSink::bind();
    let gw = Gateway::start(tmp.path(), &map_path, logs.port(), origin);
    assert_eq!(gw.admin_sock, admin_sock);
    let retried = rt.block_on(stage.retry_failed(&client)).unwrap();
    assert_eq!(retried.len(), 1);
    assert!(retried[0].ok && retried[0].already, "{retried:?}");
    assert_eq!(request(gw.fe_port, "/a", Some(&key_a.1)).0, 200);
    assert_eq!(request(gw.fe_port, "/b", Some(&key_b.1)).0, 200);
    assert!(
        rt.block_on(stage.retry_failed(&client)).unwrap().is_empty(),
        "nothing failing any more"
    );

    // --- revoke A in the database: the next cycle pushes it --------------------------------------
    rt.block_on(client.execute(
        "UPDATE api_keys SET is_active = false, revoked_at = now() WHERE key_id = $1",
        &[&key_a.0],
    ))
    .unwrap();
    let r2 = rt.block_on(stage.run_once(&client, Utc::now())).unwrap();
    assert!(r2.written && r2.seq == 2);
    assert_eq!(
        (r2.keys, r2.csv_rows),
        (2, 1),
        "revoked A stays in the map, not in the CSV"
    );
    assert!(
        r2.gateways[0].ok && !r2.gateways[0].already,
        "{:?}",
        r2.gateways
    );
    let (status, body) = request(gw.fe_port, "/a", Some(&key_a.1));
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"error":"api_key_revoked"}"#)
    );

    // --- suspend the customer --------------------------------------------------------------------
    rt.block_on(client.execute(
        "UPDATE customers SET status = 'suspended' WHERE customer_id = 777",
        &[],
    ))
    .unwrap();
    let r3 = rt.block_on(stage.run_once(&client, Utc::now())).unwrap();
    assert_eq!(r3.seq, 3);
    assert_eq!(request(gw.fe_port, "/b", Some(&key_b.1)).0, 402);

    // --- nothing changed: nothing written, the gateway already has it -----------------------------
    let r4 = rt.block_on(stage.run_once(&client, Utc::now())).unwrap();
    assert!(!r4.written && r4.seq == 3);
    assert!(r4.gateways[0].already);

    // --- a revoked key past the retention drops out of the map (then: unknown, event 11) ---------
    let later = Utc::now() + chrono::TimeDelta::days(31);
    let r5 = rt.block_on(stage.run_once(&client, later)).unwrap();
    assert_eq!((r5.seq, r5.keys), (4, 1));
    let (status, body) = request(gw.fe_port, "/a", Some(&key_a.1));
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"error":"invalid_api_key"}"#)
    );

    // --- recorded versions; a wiped directory continues the numbering ----------------------------
    let rows = rt
        .block_on(client.query(
            "SELECT seq, content_hash, entries, csv_rows FROM vault_versions ORDER BY seq",
            &[],
        ))
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(rows[3].get::<_, String>(1), r5.hash);
    std::fs::remove_dir_all(&vault_dir).unwrap();
    let r6 = rt.block_on(stage.run_once(&client, later)).unwrap();
    assert!(r6.written);
    assert_eq!(r6.seq, 5, "numbering continues from the database");
    let applied: (i64, String) = rt
        .block_on(client.query_one(
            "SELECT applied_seq, applied_hash FROM vault_gateways WHERE gateway = 'gw1'",
            &[],
        ))
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(applied, (5, r6.hash.clone()));
    drop(gw);
    drop(pg);
}
