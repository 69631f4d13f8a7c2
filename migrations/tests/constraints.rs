//! Schema constraints that protect money and usage (issue 15, item 11), against a real
//! PostgreSQL (the test fails if it cannot start one).

use tokio_postgres::error::SqlState;

async fn migrated() -> (pgcluster::PgCluster, tokio_postgres::Client) {
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let (mut c, conn) = tokio_postgres::connect(&pg.connection_string(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    suiftly_migrations::migrate(&mut c).await.unwrap();
    (pg, c)
}

#[tokio::test]
async fn the_escrow_ledger_outlives_its_customer() {
    let (_pg, c) = migrated().await;
    c.batch_execute(&format!(
        "INSERT INTO customers (customer_id, wallet_address) VALUES (42, '0x{}');
         INSERT INTO escrow_transactions (customer_id, tx_digest, kind, amount_usd_cents, balance_after_cents, nonce)
         VALUES (42, 'digest-1', 'deposit', 500, 500, 'n1');
         INSERT INTO refresh_tokens (token_hash, customer_id, created_at, expires_at, family_id)
         VALUES ('\\x01', 42, now(), now() + interval '1 day', '\\x01');",
        "a".repeat(64)
    ))
    .await
    .unwrap();
    let e = c
        .execute("DELETE FROM customers WHERE customer_id = 42", &[])
        .await
        .expect_err("deleting a customer with ledger rows must fail");
    assert_eq!(e.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION), "{e:?}");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM escrow_transactions WHERE customer_id = 42",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the ledger row is still there");
    // A customer without ledger rows can still be deleted (their sessions go with them).
    c.batch_execute(&format!(
        "INSERT INTO customers (customer_id, wallet_address) VALUES (43, '0x{}');
         INSERT INTO refresh_tokens (token_hash, customer_id, created_at, expires_at, family_id)
         VALUES ('\\x02', 43, now(), now() + interval '1 day', '\\x02');
         DELETE FROM customers WHERE customer_id = 43;",
        "b".repeat(64)
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn usage_records_refuse_negative_amounts() {
    let (_pg, c) = migrated().await;
    let insert = |req: i64, bytes: i64, charged: Option<i64>, rev: i32| {
        let c = &c;
        async move {
            c.execute(
                "INSERT INTO usage_records (customer_id, service_type, window_start, window_end, \
                 revision, request_count, bytes_transferred, charged_amount) \
                 VALUES (1, 1, now(), now() + interval '1 hour', $4, $1, $2, $3)",
                &[&req, &bytes, &charged, &rev],
            )
            .await
        }
    };
    insert(0, 0, None, 0).await.unwrap();
    for (req, bytes, charged, rev) in [
        (-1, 0, None, 1),
        (0, -1, None, 2),
        (0, 0, Some(-1), 3),
        (0, 0, None, -1),
    ] {
        let e = insert(req, bytes, charged, rev)
            .await
            .expect_err("a negative amount must be refused");
        assert_eq!(
            e.code(),
            Some(&SqlState::CHECK_VIOLATION),
            "({req}, {bytes}, {charged:?}, {rev}): {e:?}"
        );
    }
}
