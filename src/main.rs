//! `suiftly`: the one binary's command line. Everything it runs is in the `suiftly` library
//! (`src/lib.rs`): configuration, the composition root and the subcommands.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use suiftly::{
    admin_sql, api_cmd, check_config, config, database, demo, loadgen, manager_cmd, pipeline,
    replay,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "suiftly", version, about = "Suiftly metering backend")]
struct Cli {
    /// TOML configuration file (see suiftly.example.toml); defaults apply without one.
    #[arg(long, short, global = true, env = "SUIFTLY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the ingestor until SIGTERM / ctrl-c.
    Run,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Start a private PostgreSQL, replay the HAProxy fixtures through a real UDP socket and
    /// print what landed.
    Demo(demo::DemoArgs),
    /// Send fixture lines at a fixed rate and report sent / stored / lost.
    Loadgen(loadgen::LoadgenArgs),
    /// Feed captured log files (one line per datagram) through the ingest path.
    Replay(replay::ReplayArgs),
    /// Operator SQL (read-only) against the running process: live windows, settled
    /// aggregates, usage records, raw logs (with a time range).
    Sql(admin_sql::SqlArgs),
    /// Recompute the aggregates from the raw rows and print the differences (exit 1 if any);
    /// `audit billing --month YYYY-MM` audits a month of invoices and payments.
    Audit(AuditCmd),
    /// Serve the customer API (docs/API.md) until SIGTERM / ctrl-c.
    Api,
    /// Validate the config file and the environment it will run in (ports, directories,
    /// database and migrations, secrets); exit 1 if anything fails.
    CheckConfig(check_config::CheckArgs),
    /// Run the manager (billing cycle, scheduled work; one leader across processes) with its
    /// admin endpoint until SIGTERM / ctrl-c.
    Manager,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AuditCmd {
    #[command(subcommand)]
    what: Option<AuditWhat>,
    #[command(flatten)]
    metering: admin_sql::AuditArgs,
}

#[derive(Subcommand)]
enum AuditWhat {
    /// Recompute every invoice line of a month from usage_records and, independently, from
    /// haproxy_raw_logs, and check escrow debits = ledger = invoice payments (exit 1 if any
    /// difference).
    Billing(manager_cmd::AuditBillingArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tokio_postgres=warn,refinery_core=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Before loading: a config that does not load is one of the things it reports.
    if let Cmd::CheckConfig(args) = cli.cmd {
        let ok = rt.block_on(check_config::run(cli.config.as_deref(), args))?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let cfg = config::Config::load(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Run => rt.block_on(pipeline::run_until_signal(cfg)),
        Cmd::Migrate => rt.block_on(async {
            let db = database::Database::open(&cfg)?;
            db.migrate().await?;
            Ok(())
        }),
        Cmd::Demo(args) => rt.block_on(demo::run(cfg, args)),
        Cmd::Loadgen(args) => rt.block_on(loadgen::run(cfg, args)),
        Cmd::Replay(args) => rt.block_on(replay::run(cfg, args)),
        Cmd::Sql(args) => rt.block_on(admin_sql::sql_command(cfg, args)),
        Cmd::Audit(AuditCmd {
            what: Some(AuditWhat::Billing(args)),
            ..
        }) => {
            let code = rt.block_on(manager_cmd::audit_billing(cfg, args))?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Cmd::Audit(args) => rt.block_on(admin_sql::audit_command(cfg, args.metering)),
        Cmd::Api => rt.block_on(api_cmd::run(cfg)),
        Cmd::Manager => rt.block_on(manager_cmd::run(cfg)),
        Cmd::CheckConfig(_) => unreachable!("handled before the config is loaded"),
    }
}
