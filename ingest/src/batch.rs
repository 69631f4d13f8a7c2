//! Accumulates parsed lines into Arrow columns and rejected lines into owned records.
//!
//! One builder lives in each listener task; it is flushed by row count or age into a
//! [`WriteBatch`], the unit the COPY writer commits in one transaction. Appending a parsed
//! line copies its borrowed fields into Arrow's growable buffers — the only copy a good
//! line ever gets — and allocates nothing per line once the buffers have grown.

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use suiftly_parser::{ErrorKind, LogRecord};

use suiftly_model::schema::{IP_BYTES, raw_logs_schema};
pub use suiftly_model::schema::{ip_from_bytes, ip_to_bytes};

/// Why a line was not turned into a row. `as_str` is both the stored reason and the metrics
/// label, so the set is small and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The parser refused the line.
    Parse(ErrorKind),
    /// The datagram was larger than the receive buffer and arrived cut.
    Truncated,
    /// The line parsed but its timestamp lies outside the accepted window (older than
    /// retention, or too far in the future); storing it in a partition would either fail or
    /// be dropped by retention at once, so it is kept verbatim instead.
    TimestampOutOfRange,
    /// A text field holds a NUL byte, which PostgreSQL text cannot store: the row could never
    /// commit, so the line is kept verbatim here instead.
    InvalidText,
    /// A spooled record names a listener index the configuration no longer has.
    UnknownListener,
    /// The database refused the row permanently (found by bisecting a refused batch); `raw`
    /// then holds the rendered row, not the datagram.
    DbRejected,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Parse(k) => k.as_str(),
            RejectReason::Truncated => "truncated_datagram",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidText => "invalid_text",
            RejectReason::DbRejected => "db_rejected",
            RejectReason::UnknownListener => "unknown_listener",
        }
    }
}

/// A malformed line, owned: rare enough that copying it is fine, and it must outlive the
/// receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedLine {
    pub received_at_us: i64,
    pub listener: Arc<str>,
    pub source_addr: Option<String>,
    pub reason: RejectReason,
    pub error_offset: Option<i32>,
    pub raw: Vec<u8>,
}

/// What the writer commits atomically: good rows and rejected lines of the same span of
/// input.
#[derive(Debug)]
pub struct WriteBatch {
    pub rows: RecordBatch,
    pub rejected: Vec<RejectedLine>,
    /// The disk-spool positions `[start, end)` these lines came from, committed in the same
    /// transaction (`None` when the batch did not come through the spool).
    pub spool: Option<(u64, u64)>,
}

impl WriteBatch {
    pub fn len(&self) -> usize {
        self.rows.num_rows() + self.rejected.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Column builders in schema order.
pub struct RawBatchBuilder {
    timestamp: TimestampMicrosecondBuilder,
    customer_id: Int32Builder,
    path_prefix: StringBuilder,
    config_hex: Int64Builder,
    network: Int16Builder,
    server_id: Int16Builder,
    service_type: Int16Builder,
    api_key_fp: Int64Builder,
    fe_type: Int16Builder,
    traffic_type: Int16Builder,
    event_type: Int16Builder,
    client_ip: FixedSizeBinaryBuilder,
    key_metadata: Int16Builder,
    status_code: Int16Builder,
    bytes_sent: Int64Builder,
    time_total: Int32Builder,
    time_request: Int32Builder,
    time_queue: Int32Builder,
    time_connect: Int32Builder,
    time_response: Int32Builder,
    backend_id: Int16Builder,
    termination_state: StringBuilder,
    repeat: Int32Builder,
    rows: usize,
    capacity: usize,
    rejected: Vec<RejectedLine>,
}

impl RawBatchBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            timestamp: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            customer_id: Int32Builder::with_capacity(rows),
            path_prefix: StringBuilder::with_capacity(rows, rows * 10),
            config_hex: Int64Builder::with_capacity(rows),
            network: Int16Builder::with_capacity(rows),
            server_id: Int16Builder::with_capacity(rows),
            service_type: Int16Builder::with_capacity(rows),
            api_key_fp: Int64Builder::with_capacity(rows),
            fe_type: Int16Builder::with_capacity(rows),
            traffic_type: Int16Builder::with_capacity(rows),
            event_type: Int16Builder::with_capacity(rows),
            client_ip: FixedSizeBinaryBuilder::with_capacity(rows, IP_BYTES),
            key_metadata: Int16Builder::with_capacity(rows),
            status_code: Int16Builder::with_capacity(rows),
            bytes_sent: Int64Builder::with_capacity(rows),
            time_total: Int32Builder::with_capacity(rows),
            time_request: Int32Builder::with_capacity(rows),
            time_queue: Int32Builder::with_capacity(rows),
            time_connect: Int32Builder::with_capacity(rows),
            time_response: Int32Builder::with_capacity(rows),
            backend_id: Int16Builder::with_capacity(rows),
            termination_state: StringBuilder::with_capacity(rows, rows * 2),
            repeat: Int32Builder::with_capacity(rows),
            rows: 0,
            capacity: rows,
            rejected: Vec::new(),
        }
    }

    /// Rows plus rejected lines held so far.
    pub fn len(&self) -> usize {
        self.rows + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn append(&mut self, r: &LogRecord<'_>) {
        self.timestamp.append_value(r.timestamp_us);
        self.customer_id.append_option(r.customer_id);
        self.path_prefix.append_option(r.path_prefix);
        self.config_hex.append_option(r.config_hex);
        self.network.append_value(r.network);
        self.server_id.append_value(r.server_id);
        self.service_type.append_value(r.service_type);
        self.api_key_fp.append_value(r.api_key_fp);
        self.fe_type.append_value(r.fe_type);
        self.traffic_type.append_value(r.traffic_type);
        self.event_type.append_value(r.event_type);
        // Cannot fail: the slice length equals the builder's fixed width.
        let _ = self.client_ip.append_value(ip_to_bytes(r.client_ip));
        self.key_metadata.append_option(r.key_metadata);
        self.status_code.append_value(r.status_code);
        self.bytes_sent.append_value(r.bytes_sent);
        self.time_total.append_value(r.time_total);
        self.time_request.append_option(r.time_request);
        self.time_queue.append_option(r.time_queue);
        self.time_connect.append_option(r.time_connect);
        self.time_response.append_option(r.time_response);
        self.backend_id.append_option(r.backend_id);
        self.termination_state.append_option(r.termination_state);
        self.repeat.append_value(r.repeat);
        self.rows += 1;
    }

    pub fn reject(&mut self, line: RejectedLine) {
        self.rejected.push(line);
    }

    /// Takes what has accumulated and leaves the builder empty and ready for reuse.
    pub fn finish(&mut self) -> WriteBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish()),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.path_prefix.finish()),
            Arc::new(self.config_hex.finish()),
            Arc::new(self.network.finish()),
            Arc::new(self.server_id.finish()),
            Arc::new(self.service_type.finish()),
            Arc::new(self.api_key_fp.finish()),
            Arc::new(self.fe_type.finish()),
            Arc::new(self.traffic_type.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.client_ip.finish()),
            Arc::new(self.key_metadata.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.bytes_sent.finish()),
            Arc::new(self.time_total.finish()),
            Arc::new(self.time_request.finish()),
            Arc::new(self.time_queue.finish()),
            Arc::new(self.time_connect.finish()),
            Arc::new(self.time_response.finish()),
            Arc::new(self.backend_id.finish()),
            Arc::new(self.termination_state.finish()),
            Arc::new(self.repeat.finish()),
        ];
        self.rows = 0;
        let rows = RecordBatch::try_new(raw_logs_schema(), columns)
            .expect("builder columns match the shared schema by construction");
        // Keep the next batch's buffers pre-sized: the builders' finish() resets capacity.
        let cap = self.capacity;
        let rejected = std::mem::take(&mut self.rejected);
        if rows.num_rows() > 0 {
            *self = Self {
                rejected: Vec::new(),
                ..Self::with_capacity(cap)
            };
        }
        WriteBatch {
            rows,
            rejected,
            spool: None,
        }
    }
}
