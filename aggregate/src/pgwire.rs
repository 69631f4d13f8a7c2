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
//!   credential; there are no roles). Failed logins are throttled per client address
//!   ([`throttle`](crate::throttle), the same budget as the HTTP endpoint's Bearer token).
//! - **Read-only, fail closed:** the rule of [`policy`](crate::policy), in two places:
//!   - before the library parses anything, the SQL text is parsed with DataFusion's parser
//!     and refused if any statement is not admitted (this catches DataFusion-only syntax such
//!     as `COPY … TO` and `CREATE EXTERNAL TABLE`, and every statement of a multi-statement
//!     string);
//!   - [`OperatorHook`] runs before the library's own handling of every statement, in both
//!     protocols. It admits the statement, plans and checks it, and then *executes the plan
//!     it checked* (simple protocol) or hands that plan to the library as the prepared
//!     statement (extended protocol). A statement it does not admit is refused; none ever
//!     reaches the library's fallback, which parses the text again and runs it with every
//!     option allowed.
//!   - `SET` of a listed client parameter is recorded in the connection's metadata (answered
//!     per session, `SHOW` reads it back); the shared context's configuration is never
//!     changed. Refusals carry SQLSTATE 25006 (`read_only_sql_transaction`).
//! - **Bounds:** at most `max_connections` sessions (further connections are closed at once
//!   and counted); every query runs under [`guard`](crate::guard) (memory, result rows and
//!   bytes, statement timeout), and results are streamed to the client batch by batch.
//!   Sessions end when the process shuts down.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{DeclareType, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
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
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::{QueryParser, StoredStatement};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures_util::Sink;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::guard::GuardError;
use crate::policy::{self, Admission, ClientSetting};
use crate::sql::SqlError;
use crate::throttle::AuthThrottle;

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
    /// Failed-login back-off, shared with the HTTP endpoint.
    pub throttle: Arc<AuthThrottle>,
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
    let handlers = Arc::new(Handlers::new(ctx, &opts.token, opts.throttle.clone()));
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
    throttle: Arc<AuthThrottle>,
}

#[async_trait]
impl AuthSource for TokenAuth {
    /// Refuses a throttled address before the SCRAM exchange: no guess is checked while the
    /// address is blocked.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if let Ok(ip) = login.host().parse::<IpAddr>()
            && let Err(wait) = self.throttle.check(ip, Instant::now())
        {
            metrics::counter!("suiftly_pgwire_errors_total", "kind" => "auth_throttled")
                .increment(1);
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                format!(
                    "too many failed logins from this address: retry in {} s",
                    wait.as_secs().max(1)
                ),
            ))));
        }
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// The session handlers: the library's service behind the pre-check.
struct OperatorSession {
    inner: Arc<DfSessionService>,
    parser: Arc<CheckedParser>,
}

struct Handlers {
    session: Arc<OperatorSession>,
    auth: Arc<TokenAuth>,
    connections: Arc<ConnectionManager>,
    throttle: Arc<AuthThrottle>,
}

impl Handlers {
    fn new(ctx: SessionContext, token: &str, throttle: Arc<AuthThrottle>) -> Self {
        let ctx = Arc::new(ctx);
        // Order matters: transaction state first (an aborted transaction refuses everything),
        // then the operator rule, which answers every statement except the session chatter
        // the last two hooks handle without running SQL (FETCH / CLOSE, SHOW).
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(TransactionStatementHook),
            Arc::new(OperatorHook {
                throttle: throttle.clone(),
            }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
        ];
        let inner = Arc::new(DfSessionService::new_with_hooks(ctx, hooks));
        let salt: [u8; 16] = rand_salt();
        Self {
            session: Arc::new(OperatorSession {
                parser: Arc::new(CheckedParser {
                    inner: inner.query_parser(),
                }),
                inner,
            }),
            auth: Arc::new(TokenAuth {
                salted: gen_salted_password(token, &salt, SCRAM_ITERATIONS),
                salt: salt.to_vec(),
                throttle: throttle.clone(),
            }),
            connections: Arc::new(ConnectionManager::new()),
            throttle,
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
        Arc::new(CountingErrors {
            throttle: self.throttle.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.connections.clone()))
    }
}

type DfStmt = <DfSessionService as ExtendedQueryHandler>::Statement;

/// The library's extended-protocol parser behind the pre-check; a prepared statement holds
/// exactly one statement (PostgreSQL's rule), so a second one cannot ride along unseen.
struct CheckedParser {
    inner: Arc<<DfSessionService as ExtendedQueryHandler>::QueryParser>,
}

#[async_trait]
impl QueryParser for CheckedParser {
    type Statement = DfStmt;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(stmts) = policy::precheck(sql).map_err(to_pg)?
            && stmts.len() > 1
        {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl SimpleQueryHandler for OperatorSession {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Every statement of the string is checked before the first one runs.
        policy::precheck(query).map_err(to_pg)?;
        SimpleQueryHandler::do_query(&*self.inner, client, query).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for OperatorSession {
    type Statement = DfStmt;
    type QueryParser = CheckedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows).await
    }
}

/// Counts errors sent to clients by a low-cardinality kind, records failed logins for the
/// throttle, and gives guard errors their PostgreSQL SQLSTATE.
struct CountingErrors {
    throttle: Arc<AuthThrottle>,
}

impl ErrorHandler for CountingErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            if let Some(g) = GuardError::find(inner.as_ref()) {
                *error = user_error(g.sqlstate(), g.to_string());
            } else if let Some(df) = inner.downcast_ref::<datafusion::error::DataFusionError>()
                && let SqlError::Limit(m) = SqlError::from_execution(clone_df(df))
            {
                // out_of_memory
                *error = user_error("53200", m);
            }
        }
        let kind = match error {
            PgWireError::InvalidPassword(_)
            | PgWireError::InvalidScramMessage(_)
            | PgWireError::InvalidSASLState => {
                self.throttle
                    .failed(client.socket_addr().ip(), Instant::now());
                "auth_failed"
            }
            PgWireError::UserError(info) if info.code == READ_ONLY_SQLSTATE => "read_only",
            PgWireError::UserError(info) if matches!(info.code.as_str(), "54000" | "53200") => {
                "limit"
            }
            PgWireError::UserError(info) if info.code == "57014" => "timeout",
            _ => "query_error",
        };
        metrics::counter!("suiftly_pgwire_errors_total", "kind" => kind).increment(1);
        debug!(peer = %client.socket_addr(), kind, error = %error, "pgwire error");
    }
}

/// `DataFusionError` is not `Clone`; a resources-exhausted root is all the classification
/// needs.
fn clone_df(e: &datafusion::error::DataFusionError) -> datafusion::error::DataFusionError {
    match e.find_root() {
        datafusion::error::DataFusionError::ResourcesExhausted(m) => {
            datafusion::error::DataFusionError::ResourcesExhausted(m.clone())
        }
        other => datafusion::error::DataFusionError::Execution(other.strip_backtrace()),
    }
}

const READ_ONLY_SQLSTATE: &str = "25006";

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

/// The PostgreSQL error for a [`SqlError`].
fn to_pg(e: SqlError) -> PgWireError {
    match e {
        SqlError::ReadOnly(m) => user_error(READ_ONLY_SQLSTATE, format!("read-only: {m}")),
        SqlError::Limit(m) => user_error("54000", m),
        SqlError::Timeout(m) => user_error("57014", m),
        SqlError::Query(m) => user_error("XX000", m),
        SqlError::Postgres(e) => user_error("58000", format!("postgres: {e}")),
    }
}

fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}

/// The read-only rule inside the library's statement loop (see the module docs).
pub struct OperatorHook {
    throttle: Arc<AuthThrottle>,
}

impl OperatorHook {
    /// Plans, checks and runs one admitted query; the result streams to the client.
    async fn run_query(
        &self,
        stmt: &Statement,
        ctx: &SessionContext,
        client: &dyn HookClient,
    ) -> PgWireResult<Response> {
        let plan = policy::plan_checked(ctx, DfStatement::Statement(Box::new(stmt.clone())))
            .await
            .map_err(to_pg)?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| to_pg(SqlError::from_execution(e)))?;
        let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let resp = encode_dataframe(df, &Format::UnifiedText, Some(format)).await?;
        Ok(Response::Query(resp))
    }

    /// `DECLARE c CURSOR FOR <query>`: the query is checked and planned like any other; the
    /// library's FETCH / CLOSE then read the portal.
    async fn declare(
        &self,
        stmt: &Statement,
        ctx: &SessionContext,
        client: &dyn HookClient,
    ) -> PgWireResult<Response> {
        let Statement::Declare { stmts } = stmt else {
            return Err(to_pg(SqlError::Query("not a DECLARE".into())));
        };
        for d in stmts {
            if d.declare_type != Some(DeclareType::Cursor) {
                return Err(user_error(
                    "42601",
                    "only DECLARE … CURSOR is supported".into(),
                ));
            }
            let (Some(name), Some(q)) = (d.names.first(), &d.for_query) else {
                return Err(user_error(
                    "42601",
                    "DECLARE needs a cursor name and a FOR query".into(),
                ));
            };
            let plan = policy::plan_checked(
                ctx,
                DfStatement::Statement(Box::new(Statement::Query(q.clone()))),
            )
            .await
            .map_err(to_pg)?;
            let df = ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| to_pg(SqlError::from_execution(e)))?;
            let resp = encode_dataframe(df, &Format::UnifiedText, None).await?;
            let stored = Arc::new(StoredStatement::new(
                name.value.clone(),
                (q.to_string(), None),
                vec![],
            ));
            let portal = Portal::new_cursor(name.value.clone(), stored);
            portal.start(resp).await;
            client.portal_store().put_portal(Arc::new(portal));
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    fn authenticated(&self, client: &(dyn ClientInfo + Send + Sync)) {
        self.throttle.succeeded(client.socket_addr().ip());
    }
}

/// Records a client parameter in the connection's metadata (the keys the library's `SHOW`
/// and result formatting read) and reports it like PostgreSQL does.
async fn apply_setting(client: &mut dyn HookClient, s: ClientSetting) -> PgWireResult<Response> {
    let meta = client.metadata_mut();
    match s.name {
        "statement_timeout" => {
            // Applied by the library while planning; the server-wide limit always applies.
            match policy::parse_timeout_ms(&s.value) {
                Some(0) => {
                    meta.remove("statement_timeout_ms");
                }
                Some(ms) => {
                    meta.insert("statement_timeout_ms".into(), ms.to_string());
                }
                None => {
                    return Err(user_error(
                        "22023",
                        format!(
                            "invalid value for parameter \"statement_timeout\": \"{}\"",
                            s.value
                        ),
                    ));
                }
            }
        }
        "timezone" => {
            meta.insert("timezone".into(), "UTC".into());
        }
        name => {
            meta.insert(name.into(), s.value.clone());
        }
    }
    let reported = match s.name {
        "application_name" => Some(("application_name", s.value.clone())),
        "datestyle" => Some(("DateStyle", s.value.clone())),
        "intervalstyle" => Some(("IntervalStyle", s.value.clone())),
        "timezone" => Some(("TimeZone", "UTC".to_owned())),
        "client_encoding" => Some(("client_encoding", "UTF8".to_owned())),
        "extra_float_digits" => Some(("extra_float_digits", s.value.clone())),
        "search_path" => Some(("search_path", s.value.clone())),
        _ => None,
    };
    if let Some((name, value)) = reported {
        client
            .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name.into(),
                value,
            )))
            .await?;
    }
    Ok(Response::Execution(Tag::new("SET")))
}

#[async_trait]
impl QueryHook for OperatorHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.authenticated(client);
        match policy::admit(statement) {
            Err(e) => Some(Err(to_pg(e))),
            Ok(Admission::Session) => None,
            Ok(Admission::ClientSet(s)) => Some(apply_setting(client, s).await),
            Ok(Admission::Query) => Some(self.run_query(statement, ctx, client).await),
            Ok(Admission::Declare) => Some(self.declare(statement, ctx, client).await),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.authenticated(client);
        match policy::admit(statement) {
            Err(e) => Some(Err(to_pg(e))),
            Ok(Admission::Session) => None,
            // Applied / run at execute time (below), with the client at hand.
            Ok(Admission::ClientSet(_)) | Ok(Admission::Declare) => Some(Ok(empty_plan())),
            // The checked plan becomes the prepared statement the library executes.
            Ok(Admission::Query) => Some(
                policy::plan_checked(ctx, DfStatement::Statement(Box::new(statement.clone())))
                    .await
                    .map_err(to_pg),
            ),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match policy::admit(statement) {
            Err(e) => Some(Err(to_pg(e))),
            Ok(Admission::Session) => None,
            Ok(Admission::ClientSet(s)) => Some(apply_setting(client, s).await),
            Ok(Admission::Declare) => Some(self.declare(statement, ctx, client).await),
            // The portal holds the plan checked at parse time; check it again (cheap) and let
            // the library bind the parameters and execute it.
            Ok(Admission::Query) => policy::check_plan(ctx, plan).err().map(|e| Err(to_pg(e))),
        }
    }
}
