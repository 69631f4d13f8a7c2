//! The COPY writer: commits each [`WriteBatch`] in one transaction.
//!
//! Rows go in with one binary COPY encoded straight from the Arrow columns; rejected lines of
//! the same batch go into `haproxy_rejected_lines` in the same transaction, so the counters
//! and the tables can be compared exactly. A failed batch is retried (capped exponential
//! backoff, reconnecting as needed) until it commits or `abort` fires: the writer never skips
//! a batch, so upstream blocks instead (see the channel policy in [`crate::listener`]).
//!
//! Durability: a batch is durable once its transaction commits. Batches still in the channel
//! or in a listener's builder when the process is killed are lost; the disk spool (a later
//! stage) closes that gap.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use bytes::BytesMut;
use futures_util::SinkExt;
use metrics::{counter, gauge, histogram};
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::batch::WriteBatch;
use crate::copy::encode_batch;
use crate::db::{self, Storage, US_PER_HOUR};
use crate::schema::copy_raw_statement;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Encode(#[from] crate::copy::EncodeError),
}

/// What the writer did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub batches: u64,
    pub rows: u64,
    pub rejected: u64,
    pub retries: u64,
}

/// Connection settings and retry bounds.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// libpq-style connection string or URL.
    pub conninfo: String,
    pub max_backoff: Duration,
}

pub struct Writer {
    cfg: WriterConfig,
    client: Option<Client>,
    storage: Option<Storage>,
    known_partitions: BTreeSet<i64>,
    copy_stmt: String,
    buf: BytesMut,
    pub stats: WriterStats,
}

pub async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

impl Writer {
    pub fn new(cfg: WriterConfig) -> Self {
        Self {
            cfg,
            client: None,
            storage: None,
            known_partitions: BTreeSet::new(),
            copy_stmt: copy_raw_statement(),
            buf: BytesMut::with_capacity(1 << 20),
            stats: WriterStats::default(),
        }
    }

    async fn client(&mut self) -> Result<&mut Client, WriteError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let c = connect(&self.cfg.conninfo).await?;
            self.storage = Some(db::storage(&c).await?);
            self.known_partitions = db::existing_partitions(&c).await?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    /// Consumes batches until every sender is gone (orderly shutdown) or `abort` fires.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<WriteBatch>,
        abort: CancellationToken,
    ) -> WriterStats {
        while let Some(batch) = rx.recv().await {
            gauge!("suiftly_ingest_channel_depth", "channel" => "batches").set(rx.len() as f64);
            if !self.write_with_retry(&batch, &abort).await {
                let mut lost = batch.len();
                while let Ok(b) = rx.try_recv() {
                    lost += b.len();
                }
                error!(lost_lines = lost, "writer aborted with uncommitted batches");
                break;
            }
        }
        info!(stats = ?self.stats, "writer stopped");
        self.stats
    }

    /// Retries one batch until it commits (true) or `abort` fires (false).
    pub async fn write_with_retry(
        &mut self,
        batch: &WriteBatch,
        abort: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.write(batch).await {
                Ok(()) => {
                    gauge!("suiftly_ingest_degraded").set(0.0);
                    return true;
                }
                Err(e) => {
                    self.stats.retries += 1;
                    counter!("suiftly_ingest_write_retries_total").increment(1);
                    gauge!("suiftly_ingest_degraded").set(1.0);
                    warn!(error = %e, backoff_ms = backoff.as_millis() as u64, rows = batch.rows.num_rows(),
                        "batch write failed; retrying");
                    // A broken connection is replaced on the next attempt.
                    if let Some(c) = &self.client
                        && !c.is_closed()
                    {
                        // Keep it: the failure was statement-level and the tx was rolled back.
                    } else {
                        self.client = None;
                    }
                    tokio::select! {
                        _ = abort.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                }
            }
        }
    }

    /// Writes one batch in one transaction.
    pub async fn write(&mut self, batch: &WriteBatch) -> Result<(), WriteError> {
        let started = Instant::now();
        let rows = batch.rows.num_rows();
        self.ensure_partitions_for(batch).await?;
        self.buf.clear();
        if rows > 0 {
            encode_batch(&batch.rows, &mut self.buf)?;
        }
        let payload = self.buf.split().freeze();
        let stmt = self.copy_stmt.clone();
        let client = self.client().await?;
        let tx = client.transaction().await?;
        if rows > 0 {
            let sink = tx.copy_in::<_, bytes::Bytes>(stmt.as_str()).await?;
            futures_util::pin_mut!(sink);
            sink.send(payload).await?;
            sink.finish().await?;
        }
        if !batch.rejected.is_empty() {
            let sink = tx
                .copy_in(
                    "COPY haproxy_rejected_lines (received_at, listener, source_addr, reason, error_offset, raw) \
                     FROM STDIN (FORMAT binary)",
                )
                .await?;
            let w = BinaryCopyInWriter::new(
                sink,
                &[
                    Type::TIMESTAMPTZ,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT4,
                    Type::BYTEA,
                ],
            );
            futures_util::pin_mut!(w);
            for r in &batch.rejected {
                let at = UNIX_EPOCH + Duration::from_micros(r.received_at_us.max(0) as u64);
                w.as_mut()
                    .write(&[
                        &at as &(dyn tokio_postgres::types::ToSql + Sync),
                        &&*r.listener,
                        &r.source_addr,
                        &r.reason.as_str(),
                        &r.error_offset,
                        &r.raw,
                    ])
                    .await?;
            }
            w.finish().await?;
        }
        tx.commit().await?;
        let elapsed = started.elapsed();
        histogram!("suiftly_ingest_copy_seconds").record(elapsed.as_secs_f64());
        counter!("suiftly_ingest_rows_copied_total").increment(rows as u64);
        counter!("suiftly_ingest_rejected_stored_total").increment(batch.rejected.len() as u64);
        counter!("suiftly_ingest_batches_total").increment(1);
        self.stats.batches += 1;
        self.stats.rows += rows as u64;
        self.stats.rejected += batch.rejected.len() as u64;
        debug!(
            rows,
            rejected = batch.rejected.len(),
            ms = elapsed.as_millis() as u64,
            "batch committed"
        );
        Ok(())
    }

    /// Native partitioning has no default partition (a populated default partition would block
    /// creating the matching hourly partition later), so every hour a batch touches must exist
    /// before the COPY. Listeners only let through rows inside the retention window.
    async fn ensure_partitions_for(&mut self, batch: &WriteBatch) -> Result<(), WriteError> {
        if batch.rows.num_rows() == 0 {
            return Ok(());
        }
        self.client().await?;
        if self.storage == Some(Storage::Timescale) {
            return Ok(());
        }
        let ts = batch
            .rows
            .column(0)
            .as_primitive::<TimestampMicrosecondType>();
        let mut missing = BTreeSet::new();
        for v in ts.values().iter() {
            let h = v.div_euclid(US_PER_HOUR);
            if !self.known_partitions.contains(&h) {
                missing.insert(h);
            }
        }
        if !missing.is_empty() {
            let client = self.client.as_ref().expect("connected above");
            db::ensure_partitions(client, missing.iter().copied()).await?;
            self.known_partitions.extend(missing);
        }
        Ok(())
    }
}

/// Keeps native partitions ahead of time and drops expired ones, every `interval`.
pub async fn run_maintenance(
    conninfo: String,
    retention: Duration,
    ahead_hours: i64,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = maintain_once(&conninfo, retention, ahead_hours).await {
            warn!(error = %e, "partition maintenance failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One maintenance pass; returns (partitions ensured, partitions dropped).
pub async fn maintain_once(
    conninfo: &str,
    retention: Duration,
    ahead_hours: i64,
) -> Result<(usize, usize), WriteError> {
    let client = connect(conninfo).await?;
    if db::storage(&client).await? == Storage::Timescale {
        return Ok((0, 0));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let this_hour = now.div_euclid(US_PER_HOUR);
    let made = db::ensure_partitions(&client, (this_hour - 1)..=(this_hour + ahead_hours)).await?;
    let dropped = db::drop_expired_partitions(&client, now - retention.as_micros() as i64).await?;
    Ok((made, dropped.len()))
}
