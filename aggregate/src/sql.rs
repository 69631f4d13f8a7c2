//! Operator SQL: one DataFusion `SessionContext` over the live windows (memory), the settled
//! aggregate tables and `usage_records` (PostgreSQL, time-range filters pushed down) and the
//! raw logs (PostgreSQL, a time range required).
//!
//! Read-only by construction: queries run with DDL, DML and statements disallowed, and the
//! PostgreSQL tables only implement `scan`.

use std::sync::Arc;
use std::time::SystemTime;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Between, BinaryExpr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{Expr, SessionConfig, SessionContext};
use tokio_postgres::types::ToSql;

use crate::service::Aggregator;
use crate::settle::time_to_us;
use crate::window::{CustAcc, CustKey, InfraAcc, InfraKey};

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement would change something (DDL, DML, SET …).
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// Bad SQL, unknown table or column, missing time range …: the operator's to fix.
    #[error("{0}")]
    Query(String),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// The operator session (re-exported so callers need not depend on DataFusion).
pub type Context = SessionContext;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Settled tables exposed from PostgreSQL: (name, time column, time range required).
pub const PG_TABLES: &[(&str, &str, bool)] = &[
    ("stats_per_min", "bucket", false),
    ("stats_per_hour", "bucket", false),
    ("infra_per_min", "bucket", false),
    ("infra_per_hour", "bucket", false),
    ("infra_per_day", "bucket", false),
    ("usage_records", "window_start", false),
    ("haproxy_raw_logs", "timestamp", true),
];

/// Builds the operator context. Live tables are present when `agg` is (a running ingestor).
pub async fn context(agg: Option<Aggregator>, conninfo: &str) -> Result<SessionContext, SqlError> {
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(true),
    );
    let client = crate::settle::connect(conninfo).await?;
    for (name, time_col, required) in PG_TABLES {
        let t = PgTable::load(&client, conninfo, name, time_col, *required).await?;
        ctx.register_table(*name, Arc::new(t))
            .map_err(|e| SqlError::Query(e.to_string()))?;
    }
    if let Some(agg) = agg {
        ctx.register_table(
            "live_stats_per_min",
            Arc::new(LiveTable {
                agg: agg.clone(),
                kind: Live::Stats,
            }),
        )
        .map_err(|e| SqlError::Query(e.to_string()))?;
        ctx.register_table(
            "live_infra_per_min",
            Arc::new(LiveTable {
                agg,
                kind: Live::Infra,
            }),
        )
        .map_err(|e| SqlError::Query(e.to_string()))?;
    }
    Ok(ctx)
}

/// Runs one read-only query.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    let opts = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = match ctx.sql_with_options(sql, opts).await {
        Ok(df) => df,
        Err(e) => {
            let msg = e.to_string();
            // DataFusion reports refused statement classes as "... not supported" / "... are
            // not allowed"; anything else is an ordinary query error.
            if msg.contains("not allowed") || msg.contains("not supported") && is_write(sql) {
                return Err(SqlError::ReadOnly(msg));
            }
            return Err(SqlError::Query(msg));
        }
    };
    df.collect()
        .await
        .map_err(|e| SqlError::Query(e.to_string()))
}

fn is_write(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "CREATE" | "DROP" | "ALTER" | "COPY" | "SET" | "TRUNCATE"
    )
}

/// Output formats of `suiftly sql` and `POST /admin/sql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            o => Err(format!("unknown format {o:?} (table, csv, json)")),
        }
    }
}

/// Renders query results.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<Vec<u8>, SqlError> {
    let e = |e: arrow_schema::ArrowError| SqlError::Query(e.to_string());
    match format {
        Format::Table => Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .map_err(e)?
                .to_string()
                .into_bytes(),
        ),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b).map_err(e)?;
                }
            }
            Ok(out)
        }
        Format::Json => {
            let mut w = arrow_json::ArrayWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs).map_err(e)?;
            w.finish().map_err(e)?;
            let mut out = w.into_inner();
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Live windows

#[derive(Clone, Copy, Debug)]
enum Live {
    Stats,
    Infra,
}

/// The unsettled state of the running aggregator, snapshotted at scan time.
struct LiveTable {
    agg: Aggregator,
    kind: Live,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveTable({:?})", self.kind)
    }
}

fn live_stats_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bucket", ts_type(), false),
        Field::new("customer_id", DataType::Int32, false),
        Field::new("service_type", DataType::Int16, false),
        Field::new("network", DataType::Int16, false),
        Field::new("traffic_type", DataType::Int16, false),
        Field::new("status_code", DataType::Int16, false),
        Field::new("request_count", DataType::Int64, false),
        Field::new("total_bytes", DataType::Int64, false),
        Field::new("avg_response_time_ms", DataType::Float64, true),
        Field::new("min_response_time_ms", DataType::Int32, false),
        Field::new("max_response_time_ms", DataType::Int32, false),
        Field::new("response_time_sum_ms", DataType::Int64, false),
    ]))
}

fn live_infra_schema() -> SchemaRef {
    let mut f = vec![
        Field::new("bucket", ts_type(), false),
        Field::new("server_id", DataType::Int16, false),
        Field::new("service_type", DataType::Int16, false),
        Field::new("network", DataType::Int16, false),
        Field::new("backend_id", DataType::Int16, true),
        Field::new("event_type", DataType::Int16, false),
        Field::new("status_code", DataType::Int16, false),
        Field::new("request_count", DataType::Int64, false),
    ];
    for a in ["total", "queue", "connect", "response"] {
        f.push(Field::new(
            format!("avg_{a}_time_ms"),
            DataType::Float64,
            true,
        ));
    }
    for a in ["total", "queue", "connect", "response"] {
        f.push(Field::new(
            format!("{a}_time_sum_ms"),
            DataType::Int64,
            false,
        ));
        if a != "total" {
            f.push(Field::new(
                format!("{a}_time_weight"),
                DataType::Int64,
                false,
            ));
        }
    }
    Arc::new(Schema::new(f))
}

fn avg(sum: i64, w: i64) -> Option<f64> {
    (w != 0).then(|| sum as f64 / w as f64)
}

fn stats_batch(rows: &[(CustKey, CustAcc)]) -> Result<RecordBatch, DataFusionError> {
    let mut b = TimestampMicrosecondBuilder::new();
    let mut c = Int32Builder::new();
    let (mut s, mut n, mut t, mut st) = (
        Int16Builder::new(),
        Int16Builder::new(),
        Int16Builder::new(),
        Int16Builder::new(),
    );
    let (mut cnt, mut by, mut sum) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let mut av = Float64Builder::new();
    let (mut mn, mut mx) = (Int32Builder::new(), Int32Builder::new());
    for (k, v) in rows {
        b.append_value(k.minute * crate::window::US_PER_MIN);
        c.append_value(k.customer_id);
        s.append_value(k.service_type);
        n.append_value(k.network);
        t.append_value(k.traffic_type);
        st.append_value(k.status_code);
        cnt.append_value(v.request_count);
        by.append_value(v.total_bytes);
        av.append_option(avg(v.rt_sum, v.request_count));
        mn.append_value(v.rt_min);
        mx.append_value(v.rt_max);
        sum.append_value(v.rt_sum);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(b.finish().with_timezone("UTC")),
        Arc::new(c.finish()),
        Arc::new(s.finish()),
        Arc::new(n.finish()),
        Arc::new(t.finish()),
        Arc::new(st.finish()),
        Arc::new(cnt.finish()),
        Arc::new(by.finish()),
        Arc::new(av.finish()),
        Arc::new(mn.finish()),
        Arc::new(mx.finish()),
        Arc::new(sum.finish()),
    ];
    Ok(RecordBatch::try_new(live_stats_schema(), cols)?)
}

fn infra_batch(rows: &[(InfraKey, InfraAcc)]) -> Result<RecordBatch, DataFusionError> {
    let mut b = TimestampMicrosecondBuilder::new();
    let mut keys: [Int16Builder; 6] = Default::default();
    let mut cnt = Int64Builder::new();
    let mut avgs: [Float64Builder; 4] = Default::default();
    let mut sums: [Int64Builder; 7] = Default::default();
    for (k, v) in rows {
        b.append_value(k.minute * crate::window::US_PER_MIN);
        keys[0].append_value(k.server_id);
        keys[1].append_value(k.service_type);
        keys[2].append_value(k.network);
        keys[3].append_option(k.backend_id);
        keys[4].append_value(k.event_type);
        keys[5].append_value(k.status_code);
        cnt.append_value(v.request_count);
        avgs[0].append_option(avg(v.total_sum, v.request_count));
        avgs[1].append_option(avg(v.queue_sum, v.queue_w));
        avgs[2].append_option(avg(v.connect_sum, v.connect_w));
        avgs[3].append_option(avg(v.response_sum, v.response_w));
        for (i, x) in v.fields()[1..].iter().copied().enumerate() {
            sums[i].append_value(x);
        }
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(b.finish().with_timezone("UTC"))];
    cols.extend(keys.iter_mut().map(|k| Arc::new(k.finish()) as ArrayRef));
    cols.push(Arc::new(cnt.finish()));
    cols.extend(avgs.iter_mut().map(|k| Arc::new(k.finish()) as ArrayRef));
    cols.extend(sums.iter_mut().map(|k| Arc::new(k.finish()) as ArrayRef));
    Ok(RecordBatch::try_new(live_infra_schema(), cols)?)
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        match self.kind {
            Live::Stats => live_stats_schema(),
            Live::Infra => live_infra_schema(),
        }
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (cust, infra) = self.agg.live();
        let batch = match self.kind {
            Live::Stats => stats_batch(&cust)?,
            Live::Infra => infra_batch(&infra)?,
        };
        MemTable::try_new(batch.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL tables

/// A PostgreSQL table read at scan time, columns from the catalog.
#[derive(Debug)]
struct PgTable {
    conninfo: String,
    name: &'static str,
    time_col: &'static str,
    time_required: bool,
    schema: SchemaRef,
    /// Per column: the SELECT expression (e.g. `host(client_ip)` for inet).
    exprs: Vec<String>,
}

impl PgTable {
    async fn load(
        client: &tokio_postgres::Client,
        conninfo: &str,
        name: &'static str,
        time_col: &'static str,
        time_required: bool,
    ) -> Result<Self, SqlError> {
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, is_nullable = 'YES' \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&name],
            )
            .await?;
        let mut fields = Vec::new();
        let mut exprs = Vec::new();
        for r in rows {
            let (col, ty, nullable): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
            let (dt, expr) = match ty.as_str() {
                "timestamp with time zone" => (ts_type(), format!("\"{col}\"")),
                "smallint" => (DataType::Int16, format!("\"{col}\"")),
                "integer" => (DataType::Int32, format!("\"{col}\"")),
                "bigint" => (DataType::Int64, format!("\"{col}\"")),
                "double precision" => (DataType::Float64, format!("\"{col}\"")),
                "boolean" => (DataType::Boolean, format!("\"{col}\"")),
                "inet" => (DataType::Utf8, format!("host(\"{col}\")")),
                _ => (DataType::Utf8, format!("\"{col}\"::text")),
            };
            fields.push(Field::new(col, dt, nullable));
            exprs.push(expr);
        }
        if fields.is_empty() {
            return Err(SqlError::Query(format!(
                "table {name} does not exist (migrations not applied?)"
            )));
        }
        Ok(Self {
            conninfo: conninfo.to_owned(),
            name,
            time_col,
            time_required,
            schema: Arc::new(Schema::new(fields)),
            exprs,
        })
    }

    /// `(operator, bound)` when `e` compares the time column with a constant.
    fn time_bound(&self, e: &Expr) -> Vec<(Operator, i64)> {
        let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == self.time_col);
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let op = *op;
                if !matches!(
                    op,
                    Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                ) {
                    return vec![];
                }
                if is_time(left)
                    && let Some(v) = ts_literal(right)
                {
                    return vec![(op, v)];
                }
                if is_time(right)
                    && let Some(v) = ts_literal(left)
                {
                    return vec![(op.swap().unwrap_or(op), v)];
                }
                vec![]
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time(expr) => match (ts_literal(low), ts_literal(high)) {
                (Some(l), Some(h)) => vec![(Operator::GtEq, l), (Operator::LtEq, h)],
                _ => vec![],
            },
            _ => vec![],
        }
    }
}

fn ts_literal(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::TimestampSecond(Some(x), _) => Some(x * 1_000_000),
        ScalarValue::TimestampMillisecond(Some(x), _) => Some(x * 1_000),
        ScalarValue::TimestampMicrosecond(Some(x), _) => Some(*x),
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(x.div_euclid(1_000)),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for PgTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: PostgreSQL narrows the rows, DataFusion still applies the filter.
        Ok(filters
            .iter()
            .map(|f| {
                if self.time_bound(f).is_empty() {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let bounds: Vec<(Operator, i64)> =
            filters.iter().flat_map(|f| self.time_bound(f)).collect();
        let has_low = bounds
            .iter()
            .any(|(o, _)| matches!(o, Operator::Gt | Operator::GtEq | Operator::Eq));
        let has_high = bounds
            .iter()
            .any(|(o, _)| matches!(o, Operator::Lt | Operator::LtEq | Operator::Eq));
        if self.time_required && !(has_low && has_high) {
            return Err(DataFusionError::Plan(format!(
                "{} needs a time range: WHERE \"{}\" >= <timestamp> AND \"{}\" < <timestamp> (constants, e.g. now() - interval '5 minutes')",
                self.name, self.time_col, self.time_col
            )));
        }
        let cols: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&cols)?);
        let select = if cols.is_empty() {
            "1".to_owned()
        } else {
            cols.iter()
                .map(|i| self.exprs[*i].clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!("SELECT {select} FROM {}", self.name);
        let times: Vec<SystemTime> = bounds
            .iter()
            .map(|(_, v)| crate::settle::us_to_time(*v))
            .collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for (i, (op, _)) in bounds.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            let o = match op {
                Operator::Eq => "=",
                Operator::Lt => "<",
                Operator::LtEq => "<=",
                Operator::Gt => ">",
                _ => ">=",
            };
            sql.push_str(&format!("\"{}\" {o} ${}", self.time_col, i + 1));
            params.push(&times[i]);
        }
        let client = crate::settle::connect(&self.conninfo)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let rows = client
            .query(&sql, &params)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batch = rows_to_batch(&schema, &rows)?;
        MemTable::try_new(schema, vec![vec![batch]])?
            .scan(state, None, &[], None)
            .await
    }
}

fn rows_to_batch(schema: &SchemaRef, rows: &[tokio_postgres::Row]) -> DfResult<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let a: ArrayRef = match f.data_type() {
            DataType::Timestamp(..) => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(r.get::<_, Option<SystemTime>>(i).map(time_to_us));
                }
                Arc::new(b.finish().with_timezone("UTC"))
            }
            DataType::Int16 => Arc::new(
                rows.iter()
                    .map(|r| r.get::<_, Option<i16>>(i))
                    .collect::<arrow_array::Int16Array>(),
            ),
            DataType::Int32 => Arc::new(
                rows.iter()
                    .map(|r| r.get::<_, Option<i32>>(i))
                    .collect::<arrow_array::Int32Array>(),
            ),
            DataType::Int64 => Arc::new(
                rows.iter()
                    .map(|r| r.get::<_, Option<i64>>(i))
                    .collect::<arrow_array::Int64Array>(),
            ),
            DataType::Float64 => Arc::new(
                rows.iter()
                    .map(|r| r.get::<_, Option<f64>>(i))
                    .collect::<arrow_array::Float64Array>(),
            ),
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    b.append_option(r.get::<_, Option<bool>>(i));
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(r.get::<_, Option<String>>(i));
                }
                Arc::new(b.finish())
            }
        };
        cols.push(a);
    }
    let opts = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &opts,
    )?)
}
