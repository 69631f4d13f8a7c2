//! What operator SQL may run: one rule for both front-ends (`POST /admin/sql` and the
//! PostgreSQL protocol).
//!
//! Fail closed, in three layers:
//! 1. **Statement kind** ([`admit`], [`admit_df`]): an allowlist on the parsed statement.
//!    Queries (`SELECT`/`WITH`/`VALUES`, `EXPLAIN [ANALYZE]` of a query, `SHOW TABLES`,
//!    `DESCRIBE`) are planned; a few session statements are answered per connection on the
//!    PostgreSQL port (`SET` of a listed client parameter, `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK`,
//!    cursors). Everything else — `COPY`, `CREATE [EXTERNAL] TABLE`, `INSERT`, `DROP`,
//!    `SET datafusion.*`, `EXPLAIN` of a non-query, statements no rule knows — is refused as
//!    read-only.
//! 2. **Plan** ([`plan_checked`]): DataFusion plans the admitted statement, the plan is
//!    verified with DDL, DML and statements disallowed, and every scanned relation must be a
//!    table registered in the operator context (so table functions such as `generate_series`
//!    and URL tables are refused).
//! 3. **Execution**: the verified plan is what runs — never the SQL text parsed again — under
//!    the bounds of [`guard`](crate::guard).
//!
//! A statement is refused with [`SqlError::ReadOnly`](crate::sql::SqlError::ReadOnly), which
//! the HTTP endpoint answers with 403 `read_only` and the PostgreSQL port with SQLSTATE 25006.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::cte_worktable::CteWorkTable;
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    ContextModifier, Expr, ObjectName, Query, Set, SetExpr, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::sql::SqlError;

/// How a statement that passed [`admit`] is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Planned with [`plan_checked`] and run under the guard.
    Query,
    /// `SET` of a client parameter: recorded for this session only (PostgreSQL port).
    ClientSet(ClientSetting),
    /// Session chatter answered without running SQL (PostgreSQL port): `SHOW <variable>`,
    /// transaction statements, `FETCH`, `CLOSE`.
    Session,
    /// `DECLARE … CURSOR FOR <query>`: the query is planned with [`plan_checked`].
    Declare,
}

fn read_only(what: impl std::fmt::Display) -> SqlError {
    SqlError::ReadOnly(format!(
        "{what} is not allowed on the operator SQL surfaces"
    ))
}

/// Statement kind name for messages (`COPY`, `CREATE TABLE` …), without the statement text.
fn kind(stmt: &Statement) -> String {
    let s = stmt.to_string();
    let words: Vec<&str> = s.split_whitespace().take(2).collect();
    match words.as_slice() {
        [a, b] if matches!(a.to_ascii_uppercase().as_str(), "CREATE" | "DROP" | "ALTER") => {
            format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
        }
        [a, ..] => a.to_ascii_uppercase(),
        [] => "an empty statement".into(),
    }
}

/// The allowlist on a statement parsed by the PostgreSQL-protocol front-end.
pub fn admit(stmt: &Statement) -> Result<Admission, SqlError> {
    match stmt {
        Statement::Query(q) => {
            check_query_shape(q)?;
            Ok(Admission::Query)
        }
        Statement::Explain { statement, .. } => match statement.as_ref() {
            Statement::Query(q) => {
                check_query_shape(q)?;
                Ok(Admission::Query)
            }
            other => Err(read_only(format!(
                "EXPLAIN of {} (only queries may be explained)",
                kind(other)
            ))),
        },
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. } => Ok(Admission::Query),
        Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(Admission::Session),
        Statement::Declare { stmts } => {
            for d in stmts {
                match &d.for_query {
                    Some(q) => check_query_shape(q)?,
                    None => return Err(read_only("DECLARE without a FOR query")),
                }
            }
            Ok(Admission::Declare)
        }
        Statement::Set(set) => client_setting(set).map(Admission::ClientSet),
        other => Err(read_only(kind(other))),
    }
}

/// The same allowlist on a statement parsed by DataFusion's parser (the HTTP endpoint, and the
/// PostgreSQL port's pre-check, which catches DataFusion-only syntax such as `COPY … TO` and
/// `CREATE EXTERNAL TABLE` that the PostgreSQL parser would not even parse).
pub fn admit_df(stmt: &DfStatement) -> Result<Admission, SqlError> {
    match stmt {
        DfStatement::Statement(s) => admit(s),
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) if matches!(s.as_ref(), Statement::Query(_)) => admit(s),
            DfStatement::Statement(s) => Err(read_only(format!(
                "EXPLAIN of {} (only queries may be explained)",
                kind(s)
            ))),
            _ => Err(read_only("EXPLAIN of COPY, CREATE EXTERNAL TABLE or RESET")),
        },
        DfStatement::CopyTo(_) => Err(read_only("COPY")),
        DfStatement::CreateExternalTable(_) => Err(read_only("CREATE EXTERNAL TABLE")),
        DfStatement::Reset(_) => Err(read_only("RESET")),
    }
}

/// A query whose body (or a CTE, or a branch of a set operation) is a write — `WITH … INSERT`,
/// `WITH x AS (DELETE … RETURNING …) SELECT …` — is a write; `SELECT … INTO t` creates a
/// table; `FOR UPDATE` asks for locks. None belongs here.
fn check_query_shape(q: &Query) -> Result<(), SqlError> {
    if !q.locks.is_empty() {
        return Err(read_only("SELECT … FOR UPDATE/SHARE"));
    }
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            check_query_shape(&cte.query)?;
        }
    }
    check_body(&q.body)
}

fn check_body(body: &SetExpr) -> Result<(), SqlError> {
    match body {
        SetExpr::Select(s) if s.into.is_some() => Err(read_only("SELECT … INTO")),
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => Ok(()),
        SetExpr::Query(q) => check_query_shape(q),
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            Err(read_only(kind(s)))
        }
    }
}

/// Parses `sql` with DataFusion's parser (PostgreSQL dialect) and refuses it when any
/// statement fails [`admit_df`]. Returns the statements when all are admitted; `None` when
/// DataFusion's parser cannot parse the text (the caller's own parser then decides).
pub fn precheck(sql: &str) -> Result<Option<Vec<DfStatement>>, SqlError> {
    let Ok(stmts) = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) else {
        return Ok(None);
    };
    for s in &stmts {
        admit_df(s)?;
    }
    Ok(Some(stmts.into_iter().collect()))
}

/// Plans an admitted statement and checks the plan (see the module docs). The returned plan
/// is the one to execute.
pub async fn plan_checked(
    ctx: &SessionContext,
    stmt: DfStatement,
) -> Result<LogicalPlan, SqlError> {
    let state = ctx.state();
    let plan = state
        .statement_to_plan(stmt)
        .await
        .map_err(|e| SqlError::Query(e.to_string()))?;
    check_plan(ctx, &plan)?;
    Ok(plan)
}

/// DDL, DML and statements refused; every scan must read a registered table.
pub fn check_plan(ctx: &SessionContext, plan: &LogicalPlan) -> Result<(), SqlError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| SqlError::ReadOnly(e.strip_backtrace()))?;
    let mut refused = None;
    plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            let name = scan.table_name.clone();
            // A recursive CTE reads its own work table: part of the query, not a source.
            let work_table = source_as_provider(&scan.source).is_ok_and(|t| t.is::<CteWorkTable>());
            if !work_table && !ctx.table_exist(name.clone()).unwrap_or(false) {
                refused = Some(name.to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| SqlError::Query(e.to_string()))?;
    match refused {
        Some(name) => Err(read_only(format!(
            "reading {name} (table functions and file or URL tables; only the operator tables may be read)"
        ))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Client parameters

/// A `SET` the PostgreSQL port accepts: the canonical parameter name and its value. It is
/// recorded in the connection's metadata only; the shared context is never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSetting {
    pub name: &'static str,
    pub value: String,
}

/// Client parameters BI tools and drivers set, matched on the normalized name (unquoted,
/// lower-case, one part). Anything else — `datafusion.*` in any quoting above all — is
/// refused.
pub const CLIENT_PARAMETERS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
];

/// Time zone values that mean UTC: results are always computed in UTC on the shared context,
/// so a session may only ask for what it gets.
const UTC_NAMES: &[&str] = &[
    "utc", "etc/utc", "gmt", "etc/gmt", "z", "zulu", "+00:00", "00:00", "0",
];

fn normalized(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.to_ascii_lowercase(),
            None => p.to_string().to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn value_text(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn invalid(name: &str, value: &str, why: &str) -> SqlError {
    SqlError::Query(format!(
        "invalid value for parameter \"{name}\": \"{value}\" ({why})"
    ))
}

/// Checks a `SET`: a listed client parameter with an acceptable value, or refused.
pub fn client_setting(set: &Set) -> Result<ClientSetting, SqlError> {
    let (name, value) = match set {
        Set::SingleAssignment {
            scope: None | Some(ContextModifier::Session) | Some(ContextModifier::Local),
            hivevar: false,
            variable,
            values,
        } => (normalized(variable), value_text(values)),
        Set::SetTimeZone { value, .. } => (
            "timezone".to_owned(),
            value_text(std::slice::from_ref(value)),
        ),
        Set::SetNames { charset_name, .. } => {
            ("client_encoding".to_owned(), charset_name.value.clone())
        }
        other => return Err(read_only(format!("SET of this form ({other})"))),
    };
    let name = match name.as_str() {
        // PostgreSQL's spelling of the time zone parameter in `SET time zone`.
        "time zone" | "time_zone" => "timezone".to_owned(),
        _ => name,
    };
    let Some(canonical) = CLIENT_PARAMETERS.iter().copied().find(|p| *p == name) else {
        return Err(SqlError::ReadOnly(format!(
            "SET {name} is not allowed: the operator SQL context is shared by every session; \
             only client parameters may be set ({})",
            CLIENT_PARAMETERS.join(", ")
        )));
    };
    let lower = value.trim().to_ascii_lowercase();
    match canonical {
        "timezone"
            if !UTC_NAMES.contains(&lower.as_str()) && lower != "default" && lower != "local" =>
        {
            // Honouring it would mean changing the shared context's time zone (what DataFusion
            // does with `SET timezone`): refused like any other shared setting.
            return Err(SqlError::ReadOnly(format!(
                "SET timezone = '{value}' is not allowed: the operator SQL context is shared and computes in UTC (UTC is the only accepted value)"
            )));
        }
        "client_encoding"
            if !matches!(lower.as_str(), "utf8" | "utf-8" | "unicode" | "default") =>
        {
            return Err(invalid(canonical, &value, "only UTF8 is supported"));
        }
        "default_transaction_read_only"
            if !matches!(lower.as_str(), "on" | "true" | "1" | "default") =>
        {
            return Err(read_only("turning read-only off"));
        }
        "standard_conforming_strings"
            if !matches!(lower.as_str(), "on" | "true" | "1" | "default") =>
        {
            return Err(invalid(canonical, &value, "only on is supported"));
        }
        _ => {}
    }
    if value.len() > 256 {
        return Err(invalid(canonical, &value[..32], "longer than 256 bytes"));
    }
    Ok(ClientSetting {
        name: canonical,
        value,
    })
}

/// `statement_timeout` values (`0`, `5000`, `'5s'`, `'250ms'`, `'2min'`) in milliseconds.
pub fn parse_timeout_ms(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix("min") {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (v.as_str(), 1)
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn pg(sql: &str) -> Vec<Statement> {
        PostgresCompatibilityParser::new().parse(sql).unwrap()
    }

    #[test]
    fn set_is_matched_on_normalized_names() {
        for sql in [
            "SET \"datafusion.runtime.memory_limit\" = '1K'",
            "SET datafusion.execution.time_zone = '+05:00'",
            "SET \"DataFusion\".\"execution\".\"batch_size\" = 1",
            "SET \"timezone.x\" = 'UTC'",
            "SET GLOBAL application_name = 'x'",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "SET default_transaction_read_only = off",
            "SET TIME ZONE 'Europe/Paris'",
            "SET timezone = 'America/New_York'",
            "SET \"TimeZone\" TO '+05:00'",
        ] {
            let stmt = pg(sql).remove(0);
            let r = admit(&stmt);
            assert!(r.is_err(), "{sql}: {r:?}");
        }
        for (sql, name, value) in [
            (
                "SET application_name = 'grafana'",
                "application_name",
                "grafana",
            ),
            ("SET \"application_name\" TO 'x'", "application_name", "x"),
            ("SET TIME ZONE 'UTC'", "timezone", "UTC"),
            ("SET timezone = 'utc'", "timezone", "utc"),
            ("SET \"TimeZone\" = 'Etc/UTC'", "timezone", "Etc/UTC"),
            ("SET extra_float_digits = 3", "extra_float_digits", "3"),
            ("SET statement_timeout = '5s'", "statement_timeout", "5s"),
            ("SET DateStyle = ISO", "datestyle", "ISO"),
            ("SET client_encoding TO 'UTF8'", "client_encoding", "UTF8"),
        ] {
            let stmt = pg(sql).remove(0);
            assert_eq!(
                admit(&stmt).unwrap(),
                Admission::ClientSet(ClientSetting {
                    name,
                    value: value.into()
                }),
                "{sql}"
            );
        }
    }

    #[test]
    fn only_queries_are_admitted_for_planning() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "VALUES (1)",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
        ] {
            assert_eq!(
                admit(&pg(sql).remove(0)).unwrap(),
                Admission::Query,
                "{sql}"
            );
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "DROP TABLE t",
            "CREATE TABLE t (a int)",
            "CREATE VIEW v AS SELECT 1",
            "ALTER TABLE t ADD COLUMN b int",
            "TRUNCATE t",
            "COPY t TO '/tmp/x'",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            "EXPLAIN DELETE FROM t",
            "SELECT * INTO t2 FROM t",
            "SELECT * FROM t FOR UPDATE",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT 1 UNION ALL (WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT a FROM d)",
            "PREPARE p AS SELECT 1",
            "DEALLOCATE p",
            "LISTEN x",
            "VACUUM",
            "GRANT SELECT ON t TO u",
        ] {
            let stmts = pg(sql);
            assert!(admit(&stmts[0]).is_err(), "{sql}");
        }
    }

    #[test]
    fn datafusion_only_syntax_is_refused_by_the_precheck() {
        for sql in [
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "COPY (SELECT 1) TO '/tmp/x.parquet' STORED AS PARQUET",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/'",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
            "SELECT 1; DROP TABLE t",
            "/* SELECT */ DROP TABLE t",
            "-- SELECT 1\nDROP TABLE t",
            "SELECT 1;/**/CREATE TABLE t AS SELECT 1",
            "RESET datafusion.execution.batch_size",
            "SET datafusion.execution.batch_size = 1",
        ] {
            assert!(
                matches!(precheck(sql), Err(SqlError::ReadOnly(_))),
                "{sql}: {:?}",
                precheck(sql).map(|_| ())
            );
        }
        assert_eq!(precheck("SELECT 1; SELECT 2").unwrap().unwrap().len(), 2);
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout_ms("0"), Some(0));
        assert_eq!(parse_timeout_ms("250ms"), Some(250));
        assert_eq!(parse_timeout_ms("5s"), Some(5000));
        assert_eq!(parse_timeout_ms("2min"), Some(120_000));
        assert_eq!(parse_timeout_ms("1500"), Some(1500));
        assert_eq!(parse_timeout_ms("x"), None);
    }
}
