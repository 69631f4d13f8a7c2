//! The one definition of the raw-log row as it travels between stages.
//!
//! The Arrow schema below is the contract between the batch builder (`ingest::batch`), the
//! binary COPY encoder (`ingest::copy`), and the aggregator's DataFusion plans: column order
//! here *is* the COPY column list. Adding a column: a [`COLUMNS`] entry here, the field in
//! the parser's `LogRecord`, its builder in `ingest::batch::RawBatchBuilder` (append and
//! finish, in this order), and a migration — the encoder and the COPY statement follow from
//! [`COLUMNS`].

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the raw table (SPEC section 3).
pub const RAW_TABLE: &str = "haproxy_raw_logs";
/// Name of the table that keeps malformed lines verbatim.
pub const REJECTED_TABLE: &str = "haproxy_rejected_lines";

/// Width of the `client_ip` column: IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`) so one
/// fixed-size column serves both families without per-row allocation.
pub const IP_BYTES: i32 = 16;

/// PostgreSQL type of each column, used by the COPY encoder to pick the wire encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    TimestampTz,
    Int2,
    Int4,
    Int8,
    Text,
    Inet,
}

/// (column name, Arrow type, nullable, PostgreSQL type), in table order.
pub const COLUMNS: &[(&str, PgType, bool)] = &[
    ("timestamp", PgType::TimestampTz, false),
    ("customer_id", PgType::Int4, true),
    ("path_prefix", PgType::Text, true),
    ("config_hex", PgType::Int8, true),
    ("network", PgType::Int2, false),
    ("server_id", PgType::Int2, false),
    ("service_type", PgType::Int2, false),
    ("api_key_fp", PgType::Int8, false),
    ("fe_type", PgType::Int2, false),
    ("traffic_type", PgType::Int2, false),
    ("event_type", PgType::Int2, false),
    ("client_ip", PgType::Inet, false),
    ("key_metadata", PgType::Int2, true),
    ("status_code", PgType::Int2, false),
    ("bytes_sent", PgType::Int8, false),
    ("time_total", PgType::Int4, false),
    ("time_request", PgType::Int4, true),
    ("time_queue", PgType::Int4, true),
    ("time_connect", PgType::Int4, true),
    ("time_response", PgType::Int4, true),
    ("backend_id", PgType::Int2, true),
    ("termination_state", PgType::Text, true),
    ("repeat", PgType::Int4, false),
];

/// IPv4 as IPv4-mapped IPv6 so both families fit one 16-byte column.
pub fn ip_to_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inverse of [`ip_to_bytes`]: an IPv4-mapped address is reported as IPv4.
pub fn ip_from_bytes(b: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn arrow_type(t: PgType) -> DataType {
    match t {
        PgType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        PgType::Int2 => DataType::Int16,
        PgType::Int4 => DataType::Int32,
        PgType::Int8 => DataType::Int64,
        PgType::Text => DataType::Utf8,
        PgType::Inet => DataType::FixedSizeBinary(IP_BYTES),
    }
}

/// The shared Arrow schema of `haproxy_raw_logs` batches.
pub fn raw_logs_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(
                COLUMNS
                    .iter()
                    .map(|(name, t, nullable)| Field::new(*name, arrow_type(*t), *nullable))
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

/// `COPY haproxy_raw_logs (col, …) FROM STDIN (FORMAT binary)`, built from [`COLUMNS`].
pub fn copy_raw_statement() -> String {
    let cols: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    format!(
        "COPY {RAW_TABLE} ({}) FROM STDIN (FORMAT binary)",
        cols.iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_columns() {
        let s = raw_logs_schema();
        assert_eq!(s.fields().len(), COLUMNS.len());
        assert_eq!(s.field(0).name(), "timestamp");
        assert!(!s.field(0).is_nullable());
        assert!(s.field(1).is_nullable());
        assert_eq!(s.field(11).data_type(), &DataType::FixedSizeBinary(16));
        let stmt = copy_raw_statement();
        assert!(stmt.starts_with("COPY haproxy_raw_logs (\"timestamp\", \"customer_id\""));
        assert!(stmt.ends_with("\"repeat\") FROM STDIN (FORMAT binary)"));
    }
}
