//! `suiftly manager`: the manager on its own (scheduled work under one fenced leader, with its
//! admin endpoint), and `suiftly audit billing --month YYYY-MM`.
//!
//! Order: signal handlers, configuration guards (`[manager]`, the escrow, failpoints — each
//! refused in production where it must be), metrics recorder, database (DATABASE_URL, the
//! running process's embedded cluster, or an embedded one of our own) + migrations, the
//! persistent escrow mock, the vault step (`[vault]`, src/vault_task.rs) and its retry loop,
//! the manager, the admin listener; on the signal: the manager finishes the batch in progress
//! and releases its lease, the vault retry loop and the admin listener stop, then the embedded
//! PostgreSQL (if ours) stops.

use std::sync::Arc;

use anyhow::{Context, Result};
use suiftly_billing::{Escrow, Month, PriceList};
use suiftly_escrow::{PgMockEscrow, failpoint};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, ManagerSection};
use crate::database::Database;

/// The database of the running process (external, or the embedded one it advertises), else an
/// embedded cluster of our own (returned so it lives as long as the caller needs it).
async fn database(cfg: &Config) -> Result<(String, Option<Database>)> {
    if let Some(u) = &cfg.database_url {
        return Ok((u.clone(), None));
    }
    if let Ok(c) = std::fs::read_to_string(cfg.data_dir.join("conninfo"))
        && tokio_postgres::connect(c.trim(), tokio_postgres::NoTls)
            .await
            .is_ok()
    {
        return Ok((c.trim().to_owned(), None));
    }
    let db = tokio::task::block_in_place(|| Database::open(cfg))?;
    Ok((db.conninfo.clone(), Some(db)))
}

/// Guards, pools, the escrow and the vault step; the manager itself is started by the caller
/// with its stop token.
struct Prepared {
    settings: ManagerSection,
    pool: deadpool_postgres::Pool,
    escrow: Arc<dyn Escrow>,
    production: bool,
    prices: PriceList,
    vault: Option<Arc<suiftly_vault_stage::VaultStage>>,
}

impl Prepared {
    /// The steps between `bill` and `housekeeping`: the vault (issue 12).
    fn tasks(&self) -> Vec<Box<dyn suiftly_manager::Task>> {
        let mut tasks: Vec<Box<dyn suiftly_manager::Task>> = Vec::new();
        if let Some(v) = &self.vault {
            tasks.push(Box::new(crate::vault_task::VaultTask(v.clone())));
        }
        tasks
    }
}

fn prepare(cfg: &Config, conninfo: &str) -> Result<Prepared> {
    let production = cfg.api.production;
    let settings = cfg.manager.clone();
    let escrow_cfg = &cfg.escrow;
    escrow_cfg
        .check_production(production)
        .context("escrow configuration")?;
    let armed = failpoint::arm_from_env(production)?;
    if !armed.is_empty() {
        tracing::warn!(points = ?armed, "test failpoints armed: this process kills itself at them");
    }
    let pool = suiftly_manager::db::pool(
        conninfo,
        settings.db_pool_size,
        settings.idle_in_transaction(),
    )?;
    let escrow: Arc<dyn Escrow> = Arc::new(PgMockEscrow::new(suiftly_api::db::pool(
        conninfo,
        escrow_cfg.pool_size,
    )?));
    let prices = PriceList::default();
    let vault = crate::vault_task::stage(cfg, &prices).context("vault configuration")?;
    Ok(Prepared {
        settings,
        pool,
        escrow,
        production,
        prices,
        vault,
    })
}

/// The manager as a stage of `suiftly run` (`[manager] enabled`, the default): its task ends
/// when the stage is stopped (the batch in progress finishes, the lease is released). Returns
/// the admin routes, which join the process's admin endpoint.
pub fn stage(
    stages: &crate::stage::Stages,
    cfg: &Config,
    conninfo: &str,
) -> Result<(crate::stage::Stage, axum::Router)> {
    let p = prepare(cfg, conninfo)?;
    let s = stages.stage("manager", crate::stage::OnFailure::KeepRunning);
    let tasks = p.tasks();
    let (handle, manager) = suiftly_manager::start(
        p.settings.manager_config(p.prices.clone(), p.production),
        p.pool,
        p.escrow,
        conninfo.to_owned(),
        tasks,
        s.stop_token(),
    );
    info!(holder = %handle.status().holder, "manager started (leader election under way)");
    if let Some(v) = p.vault {
        let retry = crate::vault_task::retry_loop(
            v,
            handle.clone(),
            cfg.vault.retry_interval(),
            s.stop_token(),
        );
        s.spawn(async move {
            retry.await;
            Ok(crate::stage::StageOutput::Nothing)
        });
    }
    s.spawn(async move {
        manager.await?;
        Ok(crate::stage::StageOutput::Nothing)
    });
    Ok((s, suiftly_manager::admin::router(handle)))
}

pub async fn run(cfg: Config) -> Result<()> {
    let mut signals = crate::signals::Signals::new()?;
    let prom = crate::servers::install_recorder()?;
    let (conninfo, own_db) = database(&cfg).await?;
    crate::database::Database::external(conninfo.clone())
        .migrate()
        .await?;
    let p = prepare(&cfg, &conninfo)?;
    let settings = p.settings.clone();
    let stop = CancellationToken::new();
    let tasks = p.tasks();
    let (handle, manager) = suiftly_manager::start(
        settings.manager_config(p.prices.clone(), p.production),
        p.pool,
        p.escrow,
        conninfo.clone(),
        tasks,
        stop.clone(),
    );
    let vault_retry = p.vault.map(|v| {
        tokio::spawn(crate::vault_task::retry_loop(
            v,
            handle.clone(),
            cfg.vault.retry_interval(),
            stop.clone(),
        ))
    });
    let listener = tokio::net::TcpListener::bind(&settings.admin_listen)
        .await
        .with_context(|| format!("binding manager.admin_listen {}", settings.admin_listen))?;
    info!(addr = %listener.local_addr()?, holder = %handle.status().holder, "manager admin listening");
    let render = prom.clone();
    let admin = suiftly_manager::admin::router(handle.clone()).route(
        "/metrics",
        axum::routing::get(move || {
            let r = render.clone();
            async move { r.render() }
        }),
    );
    let admin_stop = stop.clone();
    let admin_task = tokio::spawn(async move {
        axum::serve(listener, admin)
            .with_graceful_shutdown(async move { admin_stop.cancelled().await })
            .await
    });
    let upkeep = tokio::spawn(crate::servers::recorder_upkeep(prom, stop.clone()));
    let mut manager = std::pin::pin!(manager);
    tokio::select! {
        r = &mut manager => {
            r?;
            anyhow::bail!("the manager stopped on its own");
        }
        _ = signals.recv() => {}
    }
    info!("shutdown requested: finishing the billing batch in progress, then releasing the lease");
    stop.cancel();
    manager.await?;
    if let Some(t) = vault_retry {
        t.await.context("vault retry task")?;
    }
    admin_task.await??;
    upkeep.await.context("metrics upkeep task")?;
    info!("manager stopped");
    if let Some(mut db) = own_db
        && let Some(c) = db.cluster.as_mut()
    {
        tokio::task::block_in_place(|| c.stop())?;
        info!("embedded postgresql stopped");
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct AuditBillingArgs {
    /// The month to audit, `YYYY-MM` (UTC).
    #[arg(long)]
    pub month: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Returns the process exit code: 0 without differences, 1 with.
pub async fn audit_billing(cfg: Config, args: AuditBillingArgs) -> Result<i32> {
    let month = Month::parse(&args.month)?;
    let (conninfo, _db) = database(&cfg).await?;
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .context("connecting to postgresql")?;
    tokio::spawn(conn);
    let escrow = PgMockEscrow::new(suiftly_api::db::pool(&conninfo, 2)?);
    let report =
        suiftly_manager::audit::audit_billing(&client, &escrow, &PriceList::default(), month)
            .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.ok() { 0 } else { 1 })
}
