//! `suiftly demo`: the whole spine on a laptop in one command.
//!
//! Starts a private PostgreSQL (unless DATABASE_URL is set), migrates, binds a UDP listener on
//! a free loopback port, replays every fixture file through that real socket (re-timed to now
//! so they fall inside the retention window), stops the pipeline in order and prints what
//! landed: rows, rejected lines by reason, a breakdown and a few sample rows.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::database::Database;
use crate::loadgen::{now_us, read_lines, retime};
use crate::pipeline::{Pipeline, Sockets};
use suiftly_ingest::listener::{Transport, UdpConfig};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Directory of captured HAProxy lines (`*.log`, one datagram per line).
    #[arg(long, default_value = "fixtures/haproxy")]
    pub fixtures: PathBuf,
    /// Listener settings (frontend mapping of the captured HAProxy).
    #[arg(long, default_value = "fixtures/haproxy/ingest.toml")]
    pub listener_config: PathBuf,
    /// Load the fixtures into this (scratch) database instead of a throwaway one, and leave
    /// them there to look at. Named explicitly on purpose: DATABASE_URL is ignored.
    #[arg(long, value_name = "URL")]
    pub into_database: Option<String>,
}

pub async fn run(mut cfg: Config, args: DemoArgs) -> Result<()> {
    // A throwaway cluster even with DATABASE_URL set (the fixtures carry real-looking customer
    // ids and must never land in a production table), unless a database is named explicitly.
    if cfg.database_url.take().is_some() && args.into_database.is_none() {
        tracing::info!("demo ignores DATABASE_URL and uses a temporary postgresql");
    }
    cfg.database_url = args.into_database.clone();
    let mut db = tokio::task::block_in_place(|| Database::temporary(&cfg))?;
    // The demo keeps its cluster until it has printed what landed; the pipeline gets the
    // connection string only.
    let cluster = db.cluster.take();
    // A fresh spool too: a spool left by another run would be replayed into this database.
    let spool_dir = std::env::temp_dir().join(format!("suiftly-demo-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool_dir);
    cfg.spool.dir = Some(spool_dir.clone());
    let text = std::fs::read_to_string(&args.listener_config)
        .with_context(|| format!("reading {}", args.listener_config.display()))?;
    let file: Config = toml::from_str(&text)
        .with_context(|| format!("parsing {}", args.listener_config.display()))?;
    cfg.listeners = file.listeners;
    for l in &mut cfg.listeners {
        l.transport = Transport::Udp(UdpConfig::new("127.0.0.1:0"));
    }
    cfg.listeners.truncate(1);
    let sockets = Sockets::listeners(&cfg)?;
    let addr = sockets.addresses()[0]
        .1
        .context("demo listener has an address")?;
    let conninfo = db.conninfo.clone();
    let pipeline = Pipeline::start(&cfg, db, sockets, None).await?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.fixtures)
        .with_context(|| format!("reading {}", args.fixtures.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no *.log fixtures in {}", args.fixtures.display());
    }
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let mut sent = 0u64;
    for f in &files {
        let lines = read_lines(f)?;
        for (i, line) in lines.iter().enumerate() {
            let out = retime(line, now_us(), None);
            sock.send_to(out.as_deref().unwrap_or(line), addr)?;
            sent += 1;
            if i % 256 == 255 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        println!("replayed {:>5} lines from {}", lines.len(), f.display());
    }
    // Let the socket drain before asking listeners to stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = pipeline.stop().await;
    if !report.failures.is_empty() {
        let all: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
        bail!("{}", all.join("; "));
    }
    let (lstats, wstats) = (report.listeners(), report.writer().unwrap_or_default());

    let client = suiftly_ingest::writer::connect(&conninfo).await?;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM haproxy_raw_logs", &[])
        .await?
        .get(0);
    let rejected: i64 = client
        .query_one("SELECT count(*) FROM haproxy_rejected_lines", &[])
        .await?
        .get(0);
    println!();
    println!("sent {sent} datagrams");
    for (l, s) in cfg.listeners.iter().zip(&lstats) {
        // With the spool on the listener only appends; parsed/rejected are the consumer's
        // counts for this listener's lines.
        println!(
            "listener {}: received {}, denied {}, accepted into the spool {}; parsed {}, rejected {}",
            l.name, s.datagrams, s.denied, s.accepted, s.parsed, s.rejected
        );
    }
    println!(
        "writer committed {} batches: {} rows, {} rejected lines",
        wstats.batches, wstats.rows, wstats.rejected
    );
    println!("in postgresql: haproxy_raw_logs = {rows}, haproxy_rejected_lines = {rejected}");
    println!();
    println!("rows by service_type / traffic_type / status:");
    for r in client
        .query(
            "SELECT service_type, traffic_type, status_code, count(*) FROM haproxy_raw_logs \
             GROUP BY 1,2,3 ORDER BY 4 DESC LIMIT 15",
            &[],
        )
        .await?
    {
        println!(
            "  svc={:<2} tt={:<2} status={:<4} {:>6}",
            r.get::<_, i16>(0),
            r.get::<_, i16>(1),
            r.get::<_, i16>(2),
            r.get::<_, i64>(3)
        );
    }
    println!("rejected lines by reason:");
    for r in client
        .query(
            "SELECT reason, count(*) FROM haproxy_rejected_lines GROUP BY 1 ORDER BY 2 DESC",
            &[],
        )
        .await?
    {
        println!("  {:<24} {:>6}", r.get::<_, &str>(0), r.get::<_, i64>(1));
    }
    println!("sample rows:");
    for r in client
        .query(
            "SELECT to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), customer_id, \
             path_prefix, host(client_ip), status_code, bytes_sent, time_total, termination_state \
             FROM haproxy_raw_logs WHERE customer_id IS NOT NULL LIMIT 5",
            &[],
        )
        .await?
    {
        println!(
            "  {} customer={:?} path={:?} ip={} status={} bytes={} ms={} term={:?}",
            r.get::<_, String>(0), r.get::<_, Option<i32>>(1), r.get::<_, Option<String>>(2),
            r.get::<_, String>(3), r.get::<_, i16>(4), r.get::<_, i64>(5), r.get::<_, i32>(6),
            r.get::<_, Option<String>>(7)
        );
    }
    if (rows + rejected) as u64 != sent {
        bail!(
            "{sent} sent but {} stored: lines were lost",
            rows + rejected
        );
    }
    println!("\nevery datagram accounted for: {rows} rows + {rejected} rejected = {sent} sent");
    drop(client);
    let _ = std::fs::remove_dir_all(&spool_dir);
    if let Some(mut c) = cluster {
        tokio::task::block_in_place(|| c.stop())?;
    }
    Ok(())
}
