//! V28 (several ingestors, one database): a single-ingestor database as the previous release
//! left it migrates to the `default` ingestor id without a change of meaning.

#[tokio::test]
async fn a_single_ingestor_database_migrates_to_the_default_id() {
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let (mut c, conn) = tokio_postgres::connect(&pg.connection_string(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    suiftly_migrations::migrate_to(&mut c, 26).await.unwrap();
    c.batch_execute(
        "INSERT INTO ingest_positions (consumer, position) VALUES ('copy', 5000);
         INSERT INTO ingest_batch_log (batch_id, rows, rejected) VALUES (42, 10, 0);
         INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before, settlement_seq)
             VALUES (1, 5000, 4000, '2026-12-01 10:07+00', 7);",
    )
    .await
    .unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();

    // The metering state is the default ingestor's; the database-wide row is unchanged.
    let r = c
        .query_one(
            "SELECT ingestor, applied_through, restart_position, \
                settled_before = '2026-12-01 10:07+00', settlement_seq, last_seq \
             FROM aggregate_ingestors",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, bool>(3),
            r.get::<_, i64>(4),
            r.get::<_, i64>(5)
        ),
        ("default".into(), 5000, 4000, true, 7, 7)
    );
    let g = c
        .query_one(
            "SELECT settled_before = '2026-12-01 10:07+00', settlement_seq FROM aggregate_state",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((g.get::<_, bool>(0), g.get::<_, i64>(1)), (true, 7));
    // The spool position keeps its key (`copy` is the default ingestor's consumer).
    let p: i64 = c
        .query_one(
            "SELECT position FROM ingest_positions WHERE consumer = 'copy'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(p, 5000);
    // Batch ids are the default ingestor's, and another ingestor's equal id does not collide.
    let who: String = c
        .query_one(
            "SELECT ingestor FROM ingest_batch_log WHERE batch_id = 42",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "default");
    c.execute(
        "INSERT INTO ingest_batch_log (ingestor, batch_id, rows, rejected) VALUES ('gw-b', 42, 1, 0)",
        &[],
    )
    .await
    .unwrap();
    let dup = c
        .execute(
            "INSERT INTO ingest_batch_log (batch_id, rows, rejected) VALUES (42, 1, 0)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}
