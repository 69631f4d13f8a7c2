//! The persistent escrow mock and the intent journal against a real PostgreSQL.

mod support;

use std::sync::Arc;

use chrono::Utc;
use suiftly_billing::{Escrow, EscrowError, Month, TxKind};
use suiftly_escrow::intent::{self, IntentState, Outcome};
use suiftly_escrow::{PgMockEscrow, mock_digest};
use support::*;

#[tokio::test]
async fn mock_survives_a_restart_and_is_idempotent_by_nonce() {
    let conninfo = fresh_database().await;
    let e = PgMockEscrow::new(pool(&conninfo, 2));
    let d = e.deposit(7, 10_000, "n1").await.unwrap();
    assert_eq!(d.balance_after_cents, 10_000);
    assert_eq!(d.digest, mock_digest(7, TxKind::Deposit, "n1"));
    // A new process (new pool, new mock): the same nonce is the same transaction.
    drop(e);
    let e = PgMockEscrow::new(pool(&conninfo, 2));
    assert_eq!(e.deposit(7, 10_000, "n1").await.unwrap(), d);
    assert_eq!(e.balance(7).await.unwrap(), 10_000);
    assert_eq!(
        e.deposit(7, 5, "n1").await.unwrap_err(),
        EscrowError::NonceReused
    );
    assert_eq!(
        e.charge(7, 10_000, "n1").await.unwrap_err(),
        EscrowError::NonceReused
    );
    // Overdraft refused, nothing recorded: the nonce stays free.
    assert_eq!(
        e.withdraw(7, 10_001, "w1").await.unwrap_err(),
        EscrowError::InsufficientFunds {
            balance_cents: 10_000,
            requested_cents: 10_001
        }
    );
    let w = e.withdraw(7, 4_000, "w1").await.unwrap();
    assert_eq!(w.balance_after_cents, 6_000);
    assert_eq!(
        e.charge(7, 0, "c0").await.unwrap_err(),
        EscrowError::InvalidAmount
    );
    let h = e.history(7).await.unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(e.balance(8).await.unwrap(), 0);
    assert!(e.history(8).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_calls_never_overdraw_nor_repeat() {
    let conninfo = fresh_database().await;
    let e = Arc::new(PgMockEscrow::new(pool(&conninfo, 8)));
    e.deposit(1, 1_000, "seed").await.unwrap();
    // 16 concurrent calls with one nonce: one transaction.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            e.charge(1, 100, "same").await.unwrap()
        }));
    }
    let mut digests = std::collections::BTreeSet::new();
    for t in tasks {
        digests.insert(t.await.unwrap().digest);
    }
    assert_eq!(digests.len(), 1);
    assert_eq!(e.balance(1).await.unwrap(), 900);
    // 20 concurrent withdrawals of 100 from 900: exactly 9 pass.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            e.withdraw(1, 100, &format!("w{i}")).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(EscrowError::InsufficientFunds { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(ok, 9);
    assert_eq!(e.balance(1).await.unwrap(), 0);
}

async fn invoice(db: &tokio_postgres::Client, customer: i32, month: &str) -> i64 {
    db.query_one(
        "INSERT INTO invoices (customer_id, month, epoch) VALUES ($1, $2::text::date, 1) RETURNING invoice_id",
        &[&customer, &month],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_charge_left_pending_is_completed_once_with_the_same_nonce() {
    let conninfo = fresh_database().await;
    let db = connect(&conninfo).await;
    customer(&db, 5).await;
    let e = PgMockEscrow::new(pool(&conninfo, 2));
    e.deposit(5, 5_000, "seed").await.unwrap();
    db.execute(
        "UPDATE customers SET current_balance_usd_cents = 5000 WHERE customer_id = 5",
        &[],
    )
    .await
    .unwrap();
    let inv = invoice(&db, 5, "2026-12-01").await;
    db.execute(
        "INSERT INTO invoice_lines (invoice_id, line_key, kind, for_month, amount_cents, description, epoch)
         VALUES ($1, 'fee:seal:month', 'fee', '2026-12-01', 2000, 'seal starter', 1)",
        &[&inv],
    )
    .await
    .unwrap();
    let mut client = connect(&conninfo).await;
    let now = Utc::now();

    // 1. The intent is committed.
    let tx = client.transaction().await.unwrap();
    let it = intent::insert_charge(&tx, 5, inv, Month::new(2026, 12), 2_000, 1, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(it.nonce, "bill:5:2026-12:1");
    assert_eq!(intent::reserved_cents(&db, 5).await.unwrap(), 2_000);
    // 2. The escrow takes the money but the reply is lost (a timeout): still pending.
    e.lose_next_replies(1);
    assert!(matches!(
        intent::call_escrow(&e, &it).await,
        Err(EscrowError::Unavailable(_))
    ));
    assert_eq!(e.balance(5).await.unwrap(), 3_000);
    let pending = intent::pending_older_than(&db, chrono::TimeDelta::zero(), 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    // 3. Whoever finds it calls again with the same nonce: the same transaction.
    let out = intent::call_escrow(&e, &pending[0]).await.unwrap();
    let Outcome::Succeeded(etx) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(etx.balance_after_cents, 3_000);
    let tx = client.transaction().await.unwrap();
    let (after, recorded) = intent::record_outcome(&tx, &pending[0], &out, Utc::now(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(recorded);
    assert_eq!(after.state, IntentState::Succeeded);
    // Recording it a second time (another process raced us) changes nothing.
    let tx = client.transaction().await.unwrap();
    let (_, recorded) = intent::record_outcome(&tx, &pending[0], &out, Utc::now(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!recorded);

    let r = db
        .query_one(
            "SELECT (SELECT count(*) FROM escrow_transactions WHERE kind = 'charge'),
                    (SELECT current_balance_usd_cents FROM customers WHERE customer_id = 5),
                    (SELECT current_month_charged_usd_cents FROM customers WHERE customer_id = 5),
                    (SELECT paid_cents FROM invoices WHERE invoice_id = $1)",
            &[&inv],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 1);
    assert_eq!(r.get::<_, i64>(1), 3_000);
    assert_eq!(r.get::<_, i64>(2), 2_000);
    assert_eq!(r.get::<_, i64>(3), 2_000);
    assert_eq!(intent::reserved_cents(&db, 5).await.unwrap(), 0);
    assert_eq!(
        e.history(5)
            .await
            .unwrap()
            .iter()
            .filter(|t| t.kind == TxKind::Charge)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_refused_charge_fails_a_pending_invoice_and_moves_nothing() {
    let conninfo = fresh_database().await;
    let db = connect(&conninfo).await;
    customer(&db, 6).await;
    let e = PgMockEscrow::new(pool(&conninfo, 2));
    let inv = invoice(&db, 6, "2026-11-01").await;
    db.batch_execute(&format!(
        "INSERT INTO invoice_lines (invoice_id, line_key, kind, for_month, amount_cents, description, epoch)
         VALUES ({inv}, 'k', 'fee', '2026-11-01', 700, 'x', 1);
         UPDATE invoices SET status = 'pending', finalized_at = now() WHERE invoice_id = {inv};"
    ))
    .await
    .unwrap();
    let mut client = connect(&conninfo).await;
    let tx = client.transaction().await.unwrap();
    let it = intent::insert_charge(&tx, 6, inv, Month::new(2026, 11), 700, 1, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = intent::call_escrow(&e, &it).await.unwrap();
    assert!(matches!(
        out,
        Outcome::Refused {
            code: "insufficient_funds",
            ..
        }
    ));
    let tx = client.transaction().await.unwrap();
    let (after, _) = intent::record_outcome(&tx, &it, &out, Utc::now(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(after.state, IntentState::Refused);
    assert_eq!(after.refusal.as_deref(), Some("insufficient_funds"));
    let st: String = db
        .query_one("SELECT status FROM invoices WHERE invoice_id = $1", &[&inv])
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "failed");
    // The next charge takes the next sequence: a new nonce.
    let tx = client.transaction().await.unwrap();
    let it2 = intent::insert_charge(&tx, 6, inv, Month::new(2026, 11), 700, 1, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(it2.nonce, "bill:6:2026-11:2");
}

#[tokio::test]
async fn schema_guards_money_records() {
    let conninfo = fresh_database().await;
    let db = connect(&conninfo).await;
    customer(&db, 9).await;
    let inv = invoice(&db, 9, "2026-11-01").await;
    db.execute(
        "INSERT INTO invoice_lines (invoice_id, line_key, kind, for_month, amount_cents, description, epoch)
         VALUES ($1, 'a', 'fee', '2026-11-01', 2000, 'x', 1)",
        &[&inv],
    )
    .await
    .unwrap();
    // The total follows the lines; the same key twice is refused.
    let total: i64 = db
        .query_one(
            "SELECT total_cents FROM invoices WHERE invoice_id = $1",
            &[&inv],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 2000);
    assert!(
        db.execute(
            "INSERT INTO invoice_lines (invoice_id, line_key, kind, for_month, amount_cents, description, epoch)
             VALUES ($1, 'a', 'fee', '2026-11-01', 5, 'x', 1)",
            &[&inv],
        )
        .await
        .is_err()
    );
    // Lines never change; a finalized invoice takes no line.
    let e = db
        .execute("UPDATE invoice_lines SET amount_cents = 1", &[])
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("never changed"));
    db.execute(
        "UPDATE invoices SET status = 'pending', finalized_at = now() WHERE invoice_id = $1",
        &[&inv],
    )
    .await
    .unwrap();
    let e = db
        .execute(
            "INSERT INTO invoice_lines (invoice_id, line_key, kind, for_month, amount_cents, description, epoch)
             VALUES ($1, 'b', 'fee', '2026-11-01', 5, 'x', 1)",
            &[&inv],
        )
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("not a draft"));
    // A customer with money records cannot be deleted.
    assert!(
        db.execute("DELETE FROM customers WHERE customer_id = 9", &[])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn usage_month_totals_follow_usage_records() {
    let conninfo = fresh_database().await;
    let db = connect(&conninfo).await;
    // Inserts, an in-place merge (the aggregator's late delta), a new revision, two months.
    db.batch_execute(
        "INSERT INTO usage_records (customer_id, service_type, window_start, window_end, request_count, bytes_transferred)
         VALUES (1, 2, '2026-11-30 23:00+00', '2026-12-01 00:00+00', 100, 1000),
                (1, 2, '2026-12-01 00:00+00', '2026-12-01 01:00+00', 5, 50);
         INSERT INTO usage_records AS t (customer_id, service_type, window_start, window_end, request_count, bytes_transferred)
         VALUES (1, 2, '2026-11-30 23:00+00', '2026-12-01 00:00+00', 7, 70)
         ON CONFLICT (customer_id, service_type, window_start, revision) DO UPDATE
         SET request_count = t.request_count + EXCLUDED.request_count,
             bytes_transferred = t.bytes_transferred + EXCLUDED.bytes_transferred;
         INSERT INTO usage_records (customer_id, service_type, window_start, window_end, revision, request_count, bytes_transferred)
         VALUES (1, 2, '2026-11-30 22:00+00', '2026-11-30 23:00+00', 1, 3, 0);
         UPDATE usage_records SET charged_amount = 0;",
    )
    .await
    .unwrap();
    let rows = db
        .query(
            "SELECT month::text, requests, bytes FROM usage_month_totals ORDER BY month",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-01".to_string(), 110, 1070),
            ("2026-12-01".to_string(), 5, 50)
        ]
    );
}
