//! V21: every change of who may pass notifies the manager's channel at commit; changes that do
//! not affect access (a balance update) and rolled-back changes do not.

use std::time::Duration;

use futures_util::StreamExt;
use pgcluster::PgCluster;
use tokio_postgres::{AsyncMessage, NoTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_changes_notify_the_manager() {
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let (mut client, conn) = tokio_postgres::connect(&pg.connection_string(), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    suiftly_migrations::migrate(&mut client).await.unwrap();

    let (listener, mut lconn) = tokio_postgres::connect(&pg.connection_string(), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| lconn.poll_message(cx)).boxed();
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener
        .batch_execute("LISTEN suiftly_manager")
        .await
        .unwrap();

    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    };
    let wallet = format!("0x{}", "cd".repeat(32));
    client
        .execute(
            "INSERT INTO customers (customer_id, wallet_address) VALUES (55, $1)",
            &[&wallet],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO service_instances (customer_id, service_type, tier, is_enabled)
             VALUES (55, 2, 'pro', true)",
        )
        .await
        .unwrap();
    let (ch, payload) = next().await.expect("service insert notifies");
    assert_eq!(ch, "suiftly_manager");
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"event": "access_changed", "table": "service_instances", "customer_id": 55})
    );

    client
        .batch_execute(
            "INSERT INTO api_keys (customer_id, service_type, fingerprint, encrypted_key, key_preview,
                 seal_network, seal_access, seal_source, proc_group)
             VALUES (55, 2, 1, '\\x00', 'x', 1, 0, 1, 0)",
        )
        .await
        .unwrap();
    assert!(next().await.unwrap().1.contains("\"api_keys\""));

    // A balance update is not an access change.
    client
        .batch_execute(
            "UPDATE customers SET current_balance_usd_cents = 500 WHERE customer_id = 55",
        )
        .await
        .unwrap();
    // A rolled-back revoke sends nothing.
    client
        .batch_execute(
            "BEGIN; UPDATE api_keys SET is_active = false, revoked_at = now(); ROLLBACK;",
        )
        .await
        .unwrap();
    // The committed revoke does.
    client
        .batch_execute("UPDATE api_keys SET is_active = false, revoked_at = now()")
        .await
        .unwrap();
    let (_, p) = next().await.unwrap();
    assert!(
        p.contains("\"api_keys\""),
        "the revoke, not the balance: {p}"
    );
    client
        .batch_execute("UPDATE customers SET status = 'suspended' WHERE customer_id = 55")
        .await
        .unwrap();
    let (_, p) = next().await.unwrap();
    assert!(p.contains("\"customers\"") && p.contains("55"), "{p}");
    client
        .batch_execute("UPDATE service_instances SET tier = 'enterprise'")
        .await
        .unwrap();
    assert!(next().await.unwrap().1.contains("service_instances"));
    // Nothing else queued.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    drop(pg);
}
