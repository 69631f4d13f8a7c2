//! Operator SQL: one DataFusion `SessionContext` over the live windows (memory), the settled
//! aggregate tables and `usage_records` (PostgreSQL, time-range filters pushed down) and the
//! raw logs (PostgreSQL, a bounded time range required).
//!
//! Read-only and bounded: what may run is decided by [`policy`](crate::policy) (the same rule
//! for `POST /admin/sql` and the PostgreSQL port), and every plan runs under the bounds of
//! [`guard`](crate::guard): a memory pool without spilling, a row and byte cap on results, a
//! statement timeout, and a cap on the PostgreSQL connections table scans hold. PostgreSQL
//! tables are streamed (one cursor per scan, rows converted a batch at a time), never loaded
//! whole.

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
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Between, BinaryExpr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::{Expr, SessionConfig, SessionContext};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;

use crate::guard::{GuardError, GuardPlanner, SqlLimits};
use crate::service::Aggregator;
use crate::settle::time_to_us;
use crate::window::{CustAcc, CustKey, InfraAcc, InfraKey};

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement would change something (DDL, DML, SET …) or read outside the operator
    /// tables.
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// Bad SQL, unknown table or column, missing time range …: the operator's to fix.
    #[error("{0}")]
    Query(String),
    /// The query passed a bound: result rows or bytes, or the memory pool.
    #[error("{0}")]
    Limit(String),
    /// The statement ran longer than the statement timeout.
    #[error("{0}")]
    Timeout(String),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

impl SqlError {
    /// Classifies an execution error: guard errors and memory exhaustion are limits.
    pub fn from_execution(e: DataFusionError) -> SqlError {
        if let Some(g) = GuardError::find(&e) {
            return match g {
                GuardError::Timeout { .. } => SqlError::Timeout(g.to_string()),
                _ => SqlError::Limit(g.to_string()),
            };
        }
        if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
            return SqlError::Limit(format!(
                "the query needs more memory than operator queries may use (admin.sql_memory_limit_bytes): {}",
                e.find_root().strip_backtrace()
            ));
        }
        SqlError::Query(e.strip_backtrace())
    }
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

/// Builds the operator context with the default [`SqlLimits`]. Live tables are present when
/// `agg` is (a running ingestor).
pub async fn context(agg: Option<Aggregator>, conninfo: &str) -> Result<SessionContext, SqlError> {
    context_with_limits(agg, conninfo, SqlLimits::default()).await
}

/// Builds the operator context under `limits` (see [`guard`](crate::guard)).
pub async fn context_with_limits(
    agg: Option<Aggregator>,
    conninfo: &str,
    limits: SqlLimits,
) -> Result<SessionContext, SqlError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_limit_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| SqlError::Query(e.to_string()))?;
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(true)
        .with_extension(Arc::new(limits.clone()));
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_query_planner(Arc::new(GuardPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let scans = Arc::new(ScanLimits {
        connections: Semaphore::new(limits.max_pg_connections.max(1)),
        raw_max_range_us: i64::try_from(limits.raw_logs_max_range.as_micros()).unwrap_or(i64::MAX),
    });
    let client = crate::settle::connect(conninfo).await?;
    for (name, time_col, required) in PG_TABLES {
        let t = PgTable::load(&client, conninfo, name, time_col, *required, scans.clone()).await?;
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

/// The limits `ctx` was built with.
pub fn limits(ctx: &SessionContext) -> SqlLimits {
    ctx.state()
        .config()
        .get_extension::<SqlLimits>()
        .map(|l| (*l).clone())
        .unwrap_or_default()
}

/// Runs one read-only query (the HTTP endpoint and `suiftly sql`): parsed with DataFusion's
/// parser, admitted and planned by [`policy`](crate::policy), executed from the checked plan
/// under the guard, collected (bounded by the result caps).
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    let limits = limits(ctx);
    let run = async {
        let stmts = match crate::policy::precheck(sql)? {
            Some(s) => s,
            None => {
                // Not parseable: let the planner's parser report the syntax error.
                let e = ctx
                    .state()
                    .create_logical_plan(sql)
                    .await
                    .err()
                    .map(|e| e.strip_backtrace())
                    .unwrap_or_else(|| "could not parse the statement".into());
                return Err(SqlError::Query(e));
            }
        };
        let mut stmts = stmts.into_iter();
        let (Some(stmt), None) = (stmts.next(), stmts.next()) else {
            return Err(SqlError::Query(
                "send exactly one statement per request".into(),
            ));
        };
        match crate::policy::admit_df(&stmt)? {
            crate::policy::Admission::Query => {}
            crate::policy::Admission::ClientSet(_) => {
                return Err(SqlError::ReadOnly(
                    "SET is not available over HTTP (there is no session to set it on)".into(),
                ));
            }
            _ => {
                return Err(SqlError::Query(
                    "session statements (BEGIN, SHOW <variable>, cursors) need the PostgreSQL port"
                        .into(),
                ));
            }
        }
        let plan = crate::policy::plan_checked(ctx, stmt).await?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(SqlError::from_execution)?;
        let stream = df
            .execute_stream()
            .await
            .map_err(SqlError::from_execution)?;
        stream
            .try_collect::<Vec<_>>()
            .await
            .map_err(SqlError::from_execution)
    };
    // The guard's clock starts at execution; this one also covers planning (scans connect
    // lazily, so planning is short, but a stuck catalog lookup must not hang a request).
    match tokio::time::timeout(
        limits.statement_timeout + std::time::Duration::from_secs(1),
        run,
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(SqlError::Timeout(
            GuardError::Timeout {
                limit: limits.statement_timeout,
            }
            .to_string(),
        )),
    }
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

/// Shared by every PostgreSQL table of one context.
#[derive(Debug)]
struct ScanLimits {
    /// One permit per open scan connection.
    connections: Semaphore,
    /// Longest `haproxy_raw_logs` range one scan may cover.
    raw_max_range_us: i64,
}

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
    scans: Arc<ScanLimits>,
}

impl PgTable {
    async fn load(
        client: &tokio_postgres::Client,
        conninfo: &str,
        name: &'static str,
        time_col: &'static str,
        time_required: bool,
        scans: Arc<ScanLimits>,
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
            scans,
        })
    }

    /// `(operator, bound in µs)` when `e` compares the time column with a constant. The
    /// bound is rounded so that PostgreSQL keeps every row DataFusion's own filter keeps (the
    /// pushdown is inexact: DataFusion filters again).
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
                    && let Some(v) = ts_literal_ns(right)
                {
                    return bound_us(op, v);
                }
                if is_time(right)
                    && let Some(v) = ts_literal_ns(left)
                {
                    return bound_us(op.swap().unwrap_or(op), v);
                }
                vec![]
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time(expr) => match (ts_literal_ns(low), ts_literal_ns(high)) {
                (Some(l), Some(h)) => {
                    let mut v = bound_us(Operator::GtEq, l);
                    v.extend(bound_us(Operator::LtEq, h));
                    v
                }
                _ => vec![],
            },
            _ => vec![],
        }
    }
}

/// A timestamp literal in nanoseconds since the epoch (exact for every unit).
fn ts_literal_ns(e: &Expr) -> Option<i128> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::TimestampSecond(Some(x), _) => Some(*x as i128 * 1_000_000_000),
        ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x as i128 * 1_000_000),
        ScalarValue::TimestampMicrosecond(Some(x), _) => Some(*x as i128 * 1_000),
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x as i128),
        _ => None,
    }
}

/// The microsecond bound(s) equivalent to `column <op> ns` for a microsecond column: a row at
/// `t` µs satisfies `t·1000 < ns` exactly when `t < ceil(ns / 1000)`, `t·1000 <= ns` when
/// `t <= floor(ns / 1000)`, and so on. (Flooring every bound dropped the rows at exactly the
/// floor of a strict `<` bound with a sub-microsecond part.)
fn bound_us(op: Operator, ns: i128) -> Vec<(Operator, i64)> {
    let floor = ns.div_euclid(1000);
    let ceil = -(-ns).div_euclid(1000);
    let us = |v: i128| i64::try_from(v).ok();
    let out = match op {
        Operator::Lt | Operator::GtEq => us(ceil).map(|v| vec![(op, v)]),
        Operator::LtEq | Operator::Gt => us(floor).map(|v| vec![(op, v)]),
        // Equal to an instant between two microseconds matches nothing: ceil > floor.
        Operator::Eq => us(ceil)
            .zip(us(floor))
            .map(|(c, f)| vec![(Operator::GtEq, c), (Operator::LtEq, f)]),
        _ => None,
    };
    out.unwrap_or_default()
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
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let bounds: Vec<(Operator, i64)> =
            filters.iter().flat_map(|f| self.time_bound(f)).collect();
        let low = bounds
            .iter()
            .filter(|(o, _)| matches!(o, Operator::Gt | Operator::GtEq))
            .map(|(_, v)| *v)
            .max();
        let high = bounds
            .iter()
            .filter(|(o, _)| matches!(o, Operator::Lt | Operator::LtEq))
            .map(|(_, v)| *v)
            .min();
        if self.time_required {
            let (Some(low), Some(high)) = (low, high) else {
                return Err(DataFusionError::Plan(format!(
                    "{} needs a time range: WHERE \"{}\" >= <timestamp> AND \"{}\" < <timestamp> (constants, e.g. now() - interval '5 minutes')",
                    self.name, self.time_col, self.time_col
                )));
            };
            let max = self.scans.raw_max_range_us;
            if high.saturating_sub(low) > max {
                return Err(DataFusionError::Plan(format!(
                    "{} time range too long: at most {} hours per query (admin.sql_raw_logs_max_range_hours); split the range",
                    self.name,
                    max / 3_600_000_000
                )));
            }
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
        let mut params = Vec::with_capacity(bounds.len());
        for (i, (op, v)) in bounds.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            let o = match op {
                Operator::Eq => "=",
                Operator::Lt => "<",
                Operator::LtEq => "<=",
                Operator::Gt => ">",
                _ => ">=",
            };
            sql.push_str(&format!("\"{}\" {o} ${}", self.time_col, i + 1));
            params.push(crate::settle::us_to_time(*v));
        }
        // DataFusion passes a limit only when every filter was pushed down exactly.
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let part = PgScan {
            conninfo: self.conninfo.clone(),
            sql,
            params,
            schema: schema.clone(),
            scans: self.scans.clone(),
            batch_rows: state.config().batch_size().max(1),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(part)],
            None,
            Vec::new(),
            false,
            None,
        )?))
    }
}

/// One streamed scan: a connection (under a [`ScanLimits`] permit) and a row stream, turned
/// into batches of `batch_rows`. Nothing happens until the plan is executed, so the
/// statement timeout covers waiting for a permit and connecting too.
#[derive(Debug)]
struct PgScan {
    conninfo: String,
    sql: String,
    params: Vec<SystemTime>,
    schema: SchemaRef,
    scans: Arc<ScanLimits>,
    batch_rows: usize,
}

impl PartitionStream for PgScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (conninfo, sql, params) =
            (self.conninfo.clone(), self.sql.clone(), self.params.clone());
        let (schema, scans, batch_rows) =
            (self.schema.clone(), self.scans.clone(), self.batch_rows);
        let ext = |e: tokio_postgres::Error| DataFusionError::External(Box::new(e));
        let open = async move {
            let permit = scans.connections_owned().await;
            let client = crate::settle::connect(&conninfo).await.map_err(ext)?;
            let rows = client
                .query_raw(&sql, params.iter().map(|t| t as &(dyn ToSql + Sync)))
                .await
                .map_err(ext)?;
            // The client and the permit live as long as the row stream.
            let keep = Arc::new((client, permit));
            let s = schema.clone();
            Ok::<_, DataFusionError>(rows.map_err(ext).chunks(batch_rows).map(move |chunk| {
                let _alive = &keep;
                let rows: Vec<tokio_postgres::Row> = chunk.into_iter().collect::<Result<_, _>>()?;
                rows_to_batch(&s, &rows)
            }))
        };
        let stream = futures_util::stream::once(open).try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

impl ScanLimits {
    /// Waits for a connection permit (the caller's statement timeout bounds the wait).
    async fn connections_owned(self: Arc<Self>) -> ScanPermit {
        let p = self
            .connections
            .acquire()
            .await
            .expect("the scan semaphore is never closed");
        p.forget();
        ScanPermit(self)
    }
}

/// Returns its permit when the scan's stream is dropped.
struct ScanPermit(Arc<ScanLimits>);

impl Drop for ScanPermit {
    fn drop(&mut self) {
        self.0.connections.add_permits(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lit_ns(ns: i64) -> Expr {
        Expr::Literal(
            ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())),
            None,
        )
    }

    /// Issue 15 item 4: `t < 1.5 µs` must keep the row at 1 µs, so the bound pushed to
    /// PostgreSQL is `< 2 µs`, not the floor `< 1 µs`; likewise for every operator.
    #[test]
    fn bounds_round_outwards_to_whole_microseconds() {
        let b = |op, ns: i64| bound_us(op, ts_literal_ns(&lit_ns(ns)).unwrap());
        assert_eq!(b(Operator::Lt, 1_500), vec![(Operator::Lt, 2)]);
        assert_eq!(b(Operator::Lt, 1_000), vec![(Operator::Lt, 1)]);
        assert_eq!(b(Operator::LtEq, 1_500), vec![(Operator::LtEq, 1)]);
        assert_eq!(b(Operator::Gt, 1_500), vec![(Operator::Gt, 1)]);
        assert_eq!(b(Operator::GtEq, 1_500), vec![(Operator::GtEq, 2)]);
        assert_eq!(b(Operator::GtEq, 1_000), vec![(Operator::GtEq, 1)]);
        assert_eq!(
            b(Operator::Eq, 1_000),
            vec![(Operator::GtEq, 1), (Operator::LtEq, 1)]
        );
        // Between two microseconds: an empty range.
        assert_eq!(
            b(Operator::Eq, 1_500),
            vec![(Operator::GtEq, 2), (Operator::LtEq, 1)]
        );
        // Before the epoch, too.
        assert_eq!(b(Operator::Lt, -1_500), vec![(Operator::Lt, -1)]);
        assert_eq!(b(Operator::Gt, -1_500), vec![(Operator::Gt, -2)]);
        // Seconds never overflow the way `x * 1_000_000` on an i64 would.
        assert_eq!(
            ts_literal_ns(&Expr::Literal(
                ScalarValue::TimestampSecond(Some(i64::MAX), None),
                None
            )),
            Some(i64::MAX as i128 * 1_000_000_000)
        );
        assert_eq!(
            bound_us(Operator::Lt, i64::MAX as i128 * 1_000_000_000),
            vec![],
            "out of range: not pushed down (DataFusion still filters)"
        );
    }
}
