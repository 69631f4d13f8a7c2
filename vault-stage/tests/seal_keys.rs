//! What the vault stage reads of Seal keys (issue 13): active keys and recently deleted ones,
//! with how the key server obtains each private key and the packages each key serves; a
//! Seal-key change notifies the manager like an API-key change.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures_util::StreamExt;
use pgcluster::PgCluster;
use suiftly_vault_stage::db::{SealMaterial, load_seal_keys};
use tokio_postgres::{AsyncMessage, NoTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_keys_as_the_key_server_needs_them() {
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let (mut c, conn) = tokio_postgres::connect(&pg.connection_string(), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    suiftly_migrations::migrate(&mut c).await.unwrap();
    let (listener, mut lconn) = tokio_postgres::connect(&pg.connection_string(), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| lconn.poll_message(cx)).boxed();
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    listener
        .batch_execute("LISTEN suiftly_manager")
        .await
        .unwrap();

    c.batch_execute(&format!(
        "INSERT INTO customers (customer_id, wallet_address) VALUES (8, '0x{}');
         INSERT INTO service_instances (customer_id, service_type, tier, is_enabled) VALUES (8, 1, 'pro', true);",
        "ab".repeat(32)
    ))
    .await
    .unwrap();
    while tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_ok()
    {}
    c.batch_execute(
        "INSERT INTO seal_keys (customer_id, instance_id, public_key, derivation_index, source, network, package_ids)
         SELECT 8, instance_id, 'aa', nextval('seal_derivation_index'), 'derived', 1, '[\"0x01\", \"0x02\"]'
         FROM service_instances WHERE customer_id = 8;
         INSERT INTO seal_keys (customer_id, instance_id, public_key, encrypted_private_key, source, network)
         SELECT 8, instance_id, 'bb', '\\x0102', 'imported', 0 FROM service_instances WHERE customer_id = 8;
         INSERT INTO seal_keys (customer_id, instance_id, public_key, derivation_index, source, is_active, revoked_at)
         SELECT 8, instance_id, 'cc', nextval('seal_derivation_index'), 'derived', false, now() - interval '40 days'
         FROM service_instances WHERE customer_id = 8;",
    )
    .await
    .unwrap();
    let payload = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a seal key change notifies the manager")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["table"], "seal_keys", "{payload}");
    assert_eq!(v["customer_id"], 8);

    let keys = load_seal_keys(&c, Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        2,
        "the key deleted 40 days ago is past the window"
    );
    assert_eq!(keys[0].public_key, "aa");
    assert_eq!(
        keys[0].material,
        SealMaterial::Derived {
            derivation_index: 0
        }
    );
    assert_eq!(keys[0].packages, ["0x01", "0x02"]);
    assert!(keys[0].service_enabled && !keys[0].revoked);
    assert_eq!(keys[0].network, 1);
    assert_eq!(
        keys[1].material,
        SealMaterial::Imported {
            encrypted_private_key: vec![1, 2]
        }
    );
    // A delete keeps the row, revoked, within the window.
    c.batch_execute(
        "UPDATE seal_keys SET is_active = false, revoked_at = now() WHERE public_key = 'aa'",
    )
    .await
    .unwrap();
    let keys = load_seal_keys(&c, Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    assert!(keys.iter().find(|k| k.public_key == "aa").unwrap().revoked);
    // The schema refuses a key that is both or neither derived and imported.
    let bad = c
        .batch_execute(
            "INSERT INTO seal_keys (customer_id, instance_id, public_key, source)
             SELECT 8, instance_id, 'dd', 'derived' FROM service_instances WHERE customer_id = 8",
        )
        .await;
    assert!(bad.is_err());
}
