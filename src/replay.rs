//! `suiftly replay <file|dir>…`: captured HAProxy lines (one datagram per line, as in
//! `fixtures/haproxy/`) through the same parse → batch → COPY path as live traffic, with a
//! progress bar. For backfills after an ingest outage and for benchmarks without sockets.
//!
//! A directory holding spool segments (`*.seg`, e.g. a copy of a stopped ingestor's
//! `data/spool`) is read record by record instead: every retained record is replayed, so feed
//! it to a database that does not already hold those rows (a rebuild, a staging copy).
//!
//! Lines keep their own timestamps, so lines older than the retention window are stored as
//! rejected `timestamp_out_of_range` (kept, not lost); `--retime` moves them to now (demos and
//! benchmarks only: it rewrites the request time).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use suiftly_ingest::backfill::Backfill;
use suiftly_ingest::writer::Writer;
use suiftly_parser::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::database::Database;
use crate::loadgen::{now_us, retime};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Files, or directories whose `*.log` files are replayed in name order.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Parse with this listener's settings (framing, payload, frontends, server id); the
    /// first configured listener by default.
    #[arg(long)]
    pub listener: Option<String>,
    /// Move each line's timestamp to now (demos/benchmarks; never for real backfills).
    #[arg(long)]
    pub retime: bool,
}

/// True for a directory of spool segments.
fn is_spool(p: &Path) -> bool {
    p.is_dir()
        && std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "seg"))
            })
            .unwrap_or(false)
}

/// Every retained record of a (stopped) spool: (line, arrived cut).
fn spool_lines(dir: &Path) -> Result<Vec<(Vec<u8>, bool)>> {
    let (w, _) = suiftly_spool::SpoolWriter::open(dir, suiftly_spool::SpoolConfig::default())
        .with_context(|| {
            format!(
                "opening the spool {} (is an ingestor still using it?)",
                dir.display()
            )
        })?;
    let mut r = w.reader(w.oldest_position())?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        let (_, truncated) = suiftly_ingest::spooled::split_listener_field(rec.listener);
        out.push((rec.payload.to_vec(), truncated));
    }
    Ok(out)
}

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if is_spool(p) {
            out.push(p.clone());
        } else if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "log"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{} is neither a file nor a directory", p.display());
        }
    }
    if out.is_empty() {
        bail!("nothing to replay");
    }
    Ok(out)
}

fn size(p: &Path) -> u64 {
    if p.is_dir() {
        return std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| size(&e.path())).sum())
            .unwrap_or(0);
    }
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

pub async fn run(cfg: Config, args: ReplayArgs) -> Result<()> {
    let files = expand(&args.paths)?;
    let lc = match &args.listener {
        Some(name) => cfg
            .listeners
            .iter()
            .find(|l| &l.name == name)
            .with_context(|| format!("no listener named {name:?} in the configuration"))?,
        None => cfg.listeners.first().context("no listener configured")?,
    };
    let parser = Parser::new(lc.source_config()?);
    let db = tokio::task::block_in_place(|| Database::open(&cfg))?;
    db.migrate().await?;
    suiftly_ingest::db::maintain_once(
        &db.conninfo,
        cfg.retention(),
        cfg.storage.partitions_ahead_hours,
    )
    .await?;

    let (tx, rx) = mpsc::channel(cfg.batch.channel_capacity);
    let writer = tokio::spawn(
        Writer::new(cfg.writer_config(&db.conninfo)).run(rx, CancellationToken::new()),
    );
    let mut backfill = Backfill::new(&format!("replay:{}", lc.name), parser, cfg.limits(), tx);

    let total: u64 = files.iter().map(|f| size(f)).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .expect("static template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let mut lines = 0u64;
    for f in &files {
        bar.set_message(
            f.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
        let owned: Vec<(Vec<u8>, bool)>;
        let data: Vec<u8>;
        let records: Box<dyn Iterator<Item = (&[u8], bool)>> = if is_spool(f) {
            owned = spool_lines(f)?;
            Box::new(owned.iter().map(|(l, t)| (l.as_slice(), *t)))
        } else {
            data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            Box::new(data.split(|&b| b == b'\n').map(|l| (l, false)))
        };
        for (line, truncated) in records {
            bar.inc(line.len() as u64 + 1);
            if line.is_empty() {
                continue;
            }
            lines += 1;
            if args.retime {
                let l = retime(line, now_us(), None);
                backfill
                    .line(l.as_deref().unwrap_or(line), truncated)
                    .await?;
            } else {
                backfill.line(line, truncated).await?;
            }
        }
    }
    let stats = backfill.finish().await?;
    let w = writer.await.context("writer task")?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {lines} lines from {} file(s) in {secs:.2}s ({:.0} lines/s): {} rows, {} rejected; committed {} rows + {} rejected in {} batches",
        files.len(),
        lines as f64 / secs,
        stats.parsed,
        stats.datagrams - stats.parsed,
        w.rows,
        w.rejected,
        w.batches
    );
    if let Some(mut c) = db.cluster {
        tokio::task::block_in_place(|| c.stop())?;
    }
    anyhow::ensure!(
        w.rows + w.rejected == lines,
        "{} lines replayed but {} stored",
        lines,
        w.rows + w.rejected
    );
    Ok(())
}
