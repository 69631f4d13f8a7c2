//! Operator SQL over the PostgreSQL wire protocol, so `psql`, Grafana and other PostgreSQL
//! clients can query the same [`sql::context`](crate::sql::context) as `POST /admin/sql`:
//! live windows, settled tables, `usage_records`, raw logs.
//!
//! Built on `datafusion-postgres` (pgwire handlers for a DataFusion `SessionContext`, a
//! `pg_catalog` emulation so `psql`'s `\d` and BI tools' schema browsers work) rather than on
//! `pgwire` alone: the extended query protocol, parameter typing and the catalog are most of
//! the work and that crate keeps them in step with DataFusion's releases.
//!
//! What this module adds on top:
//! - **Authentication:** SCRAM-SHA-256 with the operator token as the password, so the token
//!   never crosses the wire even without TLS. Any user name is accepted (the token is the
//!   credential; there are no roles).
//! - **Read-only:** [`ReadOnlyHook`] runs before every other hook, in both the simple and
//!   the extended protocol. It plans each statement with DataFusion and refuses anything
//!   DataFusion classifies as DDL, DML or a statement (the same `SQLOptions` rule as
//!   [`sql::query`](crate::sql::query)), except the session chatter clients send (`SET` of a
//!   client parameter, `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK`, cursors). `SET datafusion.*` is
//!   refused because the context is shared by every operator connection. Refusals carry
//!   SQLSTATE 25006 (`read_only_sql_transaction`).
//! - **Bounds:** at most `max_connections` sessions; further connections are closed at once
//!   and counted. Sessions end when the process shuts down.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::{DfSessionService, QueryHook};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// SCRAM iteration count (the RFC 7677 minimum, as PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PgWireSetupError {
    #[error("setting up pg_catalog: {0}")]
    Catalog(String),
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct PgWireOptions {
    /// The operator token; clients send it as the password.
    pub token: String,
    /// Concurrent sessions; more are refused.
    pub max_connections: usize,
}

/// Adds the `pg_catalog` schema and the PostgreSQL compatibility functions to `ctx`. Called
/// once before serving; harmless for the HTTP endpoint, which shares the context.
pub fn prepare_context(ctx: &SessionContext) -> Result<(), PgWireSetupError> {
    datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog(
        ctx,
        "datafusion",
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| PgWireSetupError::Catalog(e.to_string()))
}

/// Accepts connections on `listener` until `stop`, then ends the open sessions.
pub async fn serve(
    listener: TcpListener,
    ctx: SessionContext,
    opts: PgWireOptions,
    stop: CancellationToken,
) {
    let handlers = Arc::new(Handlers::new(ctx, &opts.token));
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
            // Reap finished sessions so the set does not grow with every connection.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "pgwire accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("suiftly_pgwire_connections_total", "outcome" => "refused_limit")
                .increment(1);
            warn!(%peer, max = opts.max_connections, "pgwire connection refused: too many sessions");
            drop(socket);
            continue;
        };
        metrics::counter!("suiftly_pgwire_connections_total", "outcome" => "accepted").increment(1);
        debug!(%peer, "pgwire session");
        let h = handlers.clone();
        sessions.spawn(async move {
            let _permit = permit;
            if let Err(e) =
                datafusion_postgres::pgwire::tokio::process_socket(socket, None, h).await
            {
                debug!(%peer, error = %e, "pgwire session ended with an error");
            }
        });
    }
    sessions.shutdown().await;
    info!("pgwire server stopped");
}

/// The SCRAM secret derived from the token once (PBKDF2 is deliberately slow).
#[derive(Debug)]
struct TokenAuth {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

#[async_trait]
impl AuthSource for TokenAuth {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

struct Handlers {
    session: Arc<DfSessionService>,
    auth: Arc<TokenAuth>,
    connections: Arc<ConnectionManager>,
}

impl Handlers {
    fn new(ctx: SessionContext, token: &str) -> Self {
        let ctx = Arc::new(ctx);
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnlyHook),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let salt: [u8; 16] = rand_salt();
        Self {
            session: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
            auth: Arc::new(TokenAuth {
                salted: gen_salted_password(token, &salt, SCRAM_ITERATIONS),
                salt: salt.to_vec(),
            }),
            connections: Arc::new(ConnectionManager::new()),
        }
    }
}

/// A per-process random salt. Not secret; it only has to differ between processes so a
/// captured SCRAM exchange cannot be replayed against another one.
fn rand_salt() -> [u8; 16] {
    let mut out = [0u8; 16];
    // Without an OS RNG the process has bigger problems; a fixed salt still authenticates.
    let _ = getrandom::fill(&mut out);
    out
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    /// One handler per connection: the SASL exchange keeps per-connection state.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let mut scram = ScramAuth::new(self.auth.clone());
        scram.set_iterations(SCRAM_ITERATIONS);
        let mut params = DefaultServerParameterProvider::default();
        params.is_superuser = false;
        params.default_transaction_read_only = true;
        params.time_zone = "UTC".into();
        Arc::new(
            SASLAuthStartupHandler::new(Arc::new(params))
                .with_scram(scram)
                .with_connection_manager(self.connections.clone()),
        )
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(CountingErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.connections.clone()))
    }
}

/// Counts errors sent to clients by a low-cardinality kind.
struct CountingErrors;

impl ErrorHandler for CountingErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        let kind = match error {
            PgWireError::InvalidPassword(_)
            | PgWireError::InvalidScramMessage(_)
            | PgWireError::InvalidSASLState => "auth_failed",
            PgWireError::UserError(info) if info.code == READ_ONLY_SQLSTATE => "read_only",
            _ => "query_error",
        };
        metrics::counter!("suiftly_pgwire_errors_total", "kind" => kind).increment(1);
        debug!(peer = %client.socket_addr(), kind, error = %error, "pgwire error");
    }
}

const READ_ONLY_SQLSTATE: &str = "25006";

fn read_only(what: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        READ_ONLY_SQLSTATE.into(),
        format!("read-only: {what} is not allowed on the operator SQL port"),
    )))
}

/// Refuses every statement that would change something. See the module docs.
pub struct ReadOnlyHook;

impl ReadOnlyHook {
    async fn check(&self, stmt: &Statement, ctx: &SessionContext) -> Option<PgWireError> {
        match stmt {
            // Session chatter, answered by the hooks after this one.
            Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. } => None,
            Statement::Set(set) => {
                let var = match set {
                    Set::SingleAssignment { variable, .. } => variable.to_string(),
                    _ => String::new(),
                };
                var.to_ascii_lowercase()
                    .starts_with("datafusion.")
                    .then(|| read_only("changing the shared DataFusion configuration"))
            }
            _ => {
                // Let DataFusion classify the statement; a statement it cannot plan is left
                // to the normal path, which reports the planning error to the client.
                let state = ctx.state();
                let plan = state
                    .statement_to_plan(DfStatement::Statement(Box::new(stmt.clone())))
                    .await
                    .ok()?;
                let opts = SQLOptions::new()
                    .with_allow_ddl(false)
                    .with_allow_dml(false)
                    .with_allow_statements(false);
                opts.verify_plan(&plan)
                    .err()
                    .map(|e| read_only(&e.to_string()))
            }
        }
    }
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement, ctx).await.map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.check(statement, ctx).await.map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement, ctx).await.map(Err)
    }
}
