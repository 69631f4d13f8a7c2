//! Bounds on operator queries: whatever an operator sends, it must not take ingest down.
//!
//! The operator [`SessionContext`](datafusion::prelude::SessionContext) is built with
//! - a memory pool of [`SqlLimits::memory_limit_bytes`] shared by every operator query
//!   (sorts, aggregations, joins; spilling to disk is disabled, so a query that needs more
//!   fails instead of filling the disk the spool and the WAL live on);
//! - a query planner ([`GuardPlanner`]) that puts a [`GuardExec`] at the root of every
//!   physical plan, whichever front-end planned it (`POST /admin/sql`, the PostgreSQL
//!   protocol's simple and extended paths, cursors). The guard ends the result stream with a
//!   typed [`GuardError`] when the result passes [`SqlLimits::max_result_rows`] or
//!   [`SqlLimits::max_result_bytes`], or when the statement has run for
//!   [`SqlLimits::statement_timeout`]; dropping the stream cancels the plan below it.
//!
//! The limits travel in the session config as an extension, so the planner needs no global.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use futures_util::Stream;

/// Resource bounds of operator SQL (`[admin]` `sql_*` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlLimits {
    /// Memory pool shared by all operator queries.
    pub memory_limit_bytes: usize,
    /// Rows one result may have.
    pub max_result_rows: u64,
    /// Bytes (Arrow in-memory size) one result may have.
    pub max_result_bytes: u64,
    /// Wall time of one statement, from the start of execution.
    pub statement_timeout: Duration,
    /// PostgreSQL connections open at once for table scans (all operator queries together).
    pub max_pg_connections: usize,
    /// Longest time range one `haproxy_raw_logs` scan may cover.
    pub raw_logs_max_range: Duration,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 256 << 20,
            max_result_rows: 1_000_000,
            max_result_bytes: 64 << 20,
            statement_timeout: Duration::from_secs(60),
            max_pg_connections: 4,
            raw_logs_max_range: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why the guard ended a query. Carried inside `DataFusionError::External` so both
/// front-ends can recognise it (see [`GuardError::find`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error(
        "the result has more than {limit} rows (admin.sql_max_result_rows): aggregate, filter or add LIMIT"
    )]
    Rows { limit: u64 },
    #[error(
        "the result is larger than {limit} bytes (admin.sql_max_result_bytes): select fewer columns or rows"
    )]
    Bytes { limit: u64 },
    #[error("canceling statement due to statement timeout ({} ms, admin.sql_statement_timeout_ms)", limit.as_millis())]
    Timeout { limit: Duration },
}

impl GuardError {
    /// The SQLSTATE PostgreSQL uses for the same condition.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            // program_limit_exceeded
            GuardError::Rows { .. } | GuardError::Bytes { .. } => "54000",
            // query_canceled
            GuardError::Timeout { .. } => "57014",
        }
    }

    /// The guard error somewhere in `e`'s source chain, if any.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a GuardError> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(g) = err.downcast_ref::<GuardError>() {
                return Some(g);
            }
            if let Some(DataFusionError::External(inner)) = err.downcast_ref::<DataFusionError>()
                && let Some(g) = inner.downcast_ref::<GuardError>()
            {
                return Some(g);
            }
            cur = err.source();
        }
        None
    }
}

/// Plans with DataFusion's default planner, then puts a [`GuardExec`] on top.
#[derive(Debug, Default)]
pub struct GuardPlanner;

#[async_trait]
impl QueryPlanner for GuardPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let limits = session
            .config()
            .get_extension::<SqlLimits>()
            .map(|l| (*l).clone())
            .unwrap_or_default();
        let plan = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await?;
        Ok(GuardExec::wrap(plan, limits))
    }
}

/// The root of every operator plan: counts rows and bytes and watches the clock.
#[derive(Debug)]
pub struct GuardExec {
    input: Arc<dyn ExecutionPlan>,
    limits: SqlLimits,
    props: Arc<PlanProperties>,
}

impl GuardExec {
    /// `input` merged into one partition (the counters are per result), under a guard.
    pub fn wrap(input: Arc<dyn ExecutionPlan>, limits: SqlLimits) -> Arc<dyn ExecutionPlan> {
        let input: Arc<dyn ExecutionPlan> = if input.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(input))
        } else {
            input
        };
        let props = Arc::new(
            input
                .properties()
                .as_ref()
                .clone()
                .with_partitioning(Partitioning::UnknownPartitioning(1)),
        );
        Arc::new(GuardExec {
            input,
            limits,
            props,
        })
    }
}

impl DisplayAs for GuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "GuardExec: rows<={}, bytes<={}, timeout={}ms",
            self.limits.max_result_rows,
            self.limits.max_result_bytes,
            self.limits.statement_timeout.as_millis()
        )
    }
}

impl ExecutionPlan for GuardExec {
    fn name(&self) -> &'static str {
        "GuardExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "GuardExec has exactly one child".into(),
            ));
        }
        Ok(GuardExec::wrap(
            children.swap_remove(0),
            self.limits.clone(),
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "GuardExec has one partition, asked for {partition}"
            )));
        }
        let input = self.input.execute(0, context)?;
        Ok(Box::pin(GuardStream {
            schema: input.schema(),
            input,
            limits: self.limits.clone(),
            rows: 0,
            bytes: 0,
            deadline: Box::pin(tokio::time::sleep(self.limits.statement_timeout)),
            done: false,
        }))
    }
}

struct GuardStream {
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    limits: SqlLimits,
    rows: u64,
    bytes: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl GuardStream {
    fn fail(&mut self, e: GuardError) -> Poll<Option<DfResult<RecordBatch>>> {
        self.done = true;
        let reason = match e {
            GuardError::Rows { .. } => "rows",
            GuardError::Bytes { .. } => "bytes",
            GuardError::Timeout { .. } => "timeout",
        };
        metrics::counter!("suiftly_operator_sql_limited_total", "reason" => reason).increment(1);
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(e)))))
    }
}

/// The bytes a batch adds to a result: only the visible slice of each column.
fn batch_bytes(b: &RecordBatch) -> u64 {
    b.columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size()) as u64
        })
        .sum()
}

impl Stream for GuardStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Polled on every wake-up, so the deadline fires even while the input is pending.
        if self.deadline.as_mut().poll(cx).is_ready() {
            let limit = self.limits.statement_timeout;
            return self.fail(GuardError::Timeout { limit });
        }
        match self.input.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows() as u64;
                self.bytes += batch_bytes(&batch);
                if self.rows > self.limits.max_result_rows {
                    let limit = self.limits.max_result_rows;
                    return self.fail(GuardError::Rows { limit });
                }
                if self.bytes > self.limits.max_result_bytes {
                    let limit = self.limits.max_result_bytes;
                    return self.fail(GuardError::Bytes { limit });
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl RecordBatchStream for GuardStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
