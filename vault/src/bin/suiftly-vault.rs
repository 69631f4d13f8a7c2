//! `suiftly-vault`: operator and test tool for the vault files, without a database.
//!
//! ```text
//! suiftly-vault verify <map-file>                 check a map file is one complete version
//! suiftly-vault applied <endpoint> <map-path>     the version a gateway's HAProxy matches with
//! suiftly-vault push <endpoint> <map-path> <map-file>
//!                                                 push a map file live (prepare/add/commit)
//! suiftly-vault synth --out <dir> [--keys N] [--seed S] [--versions V] [--keep K] [--pause-at STEP]
//!                                                 write V synthetic versions (V = 0: forever)
//! ```
//!
//! `<endpoint>` is `unix:<path>` or `tcp:<host>:<port>` (the gateway's `stats socket`);
//! `<map-path>` is the map's path as the gateway's HAProxy config names it.
//! `synth` is what the crash test kills at random points and what the push benchmark uses.
//! With `--pause-at STEP` (a `WriteStep` name, e.g. `csv-live`) it stops inside its first
//! write that reaches that step, prints `paused step=<STEP> seq=<n>` on stdout and sleeps until
//! killed: the crash test SIGKILLs it there, provably mid-write.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::io::Write;
use std::sync::OnceLock;
use suiftly_vault::runtime::{self, Endpoint, PushPolicy, RuntimeClient};

use suiftly_vault::{MapHeader, RateLimits, Secret, VaultFiles, WriteOutcome, WriteStep, build};

fn usage() -> ExitCode {
    eprintln!(
        "usage: suiftly-vault verify <map-file>\n       suiftly-vault applied <endpoint> <map-path>\n       \
         suiftly-vault push <endpoint> <map-path> <map-file>\n       \
         suiftly-vault synth --out <dir> [--keys N] [--seed S] [--versions V] [--keep K] [--pause-at STEP]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match a.as_slice() {
        ["verify", file] => verify(file),
        ["applied", ep, map] => applied(ep, map),
        ["push", ep, map, file] => push(ep, map, file),
        ["synth", rest @ ..] => synth(rest),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn verify(file: &str) -> Res {
    let text = std::fs::read_to_string(file)?;
    let h = MapHeader::verify(&text)?;
    println!(
        "ok seq={} hash={} entries={} bytes={}",
        h.seq,
        h.hash,
        h.entries,
        text.len()
    );
    Ok(())
}

fn applied(ep: &str, map: &str) -> Res {
    let mut c = RuntimeClient::connect(&ep.parse::<Endpoint>()?, Duration::from_secs(5))?;
    let (ver, entries) = c.map_status(map)?;
    match c.applied(map)? {
        Some((seq, hash)) => {
            println!("seq={seq} hash={hash} haproxy_version={ver} entries={entries}")
        }
        None => {
            println!("no vault marker (not a vault map) haproxy_version={ver} entries={entries}")
        }
    }
    Ok(())
}

fn push(ep: &str, map: &str, file: &str) -> Res {
    let text = std::fs::read_to_string(file)?;
    let gw = runtime::Gateway {
        name: ep.to_string(),
        endpoint: ep.parse()?,
        map: map.to_string(),
    };
    let out = runtime::push_all(&[gw], &text, &PushPolicy::default())
        .pop()
        .expect("one gateway");
    let a = out.result?;
    println!(
        "seq={} hash={} haproxy_version={} entries={} already={} chunks={} bytes={} attempts={} elapsed_ms={}",
        a.seq,
        a.hash,
        a.haproxy_version,
        a.entries,
        a.already,
        a.chunks,
        a.bytes,
        out.attempts,
        out.elapsed.as_millis()
    );
    Ok(())
}

/// The step `synth --pause-at` stops at.
static PAUSE_AT: OnceLock<WriteStep> = OnceLock::new();

fn pause_at(step: WriteStep, seq: u64) {
    if PAUSE_AT.get() == Some(&step) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "paused step={} seq={seq}", step.name());
        let _ = out.flush();
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn synth(rest: &[&str]) -> Res {
    let mut out = None;
    let mut pause = None;
    let (mut keys, mut seed, mut versions, mut keep) = (1_000usize, 1u64, 1u64, 5usize);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or("flag without a value")?;
        match *flag {
            "--out" => out = Some(v.to_string()),
            "--keys" => keys = v.parse()?,
            "--seed" => seed = v.parse()?,
            "--versions" => versions = v.parse()?,
            "--keep" => keep = v.parse()?,
            "--pause-at" => pause = Some(WriteStep::parse(v).ok_or(format!("unknown step {v}"))?),
            f => return Err(format!("unknown flag {f}").into()),
        }
    }
    let mut files = VaultFiles::new(out.ok_or("--out is required")?, keep);
    if let Some(step) = pause {
        PAUSE_AT.set(step).expect("set once");
        files = files.with_step_hook(pause_at);
    }
    let t0 = Instant::now();
    let mut input = suiftly_vault::synth::synthetic(keys, seed, &Secret::development());
    eprintln!(
        "synthesized {} keys in {} ms",
        input.keys.len(),
        t0.elapsed().as_millis()
    );
    let limits = RateLimits::default();
    let mut i = 0u64;
    while versions == 0 || i < versions {
        // Each version flips one key's revocation so every write is a new version.
        if i > 0 && !input.keys.is_empty() {
            let k = (i as usize * 7919) % input.keys.len();
            input.keys[k].revoked = !input.keys[k].revoked;
        }
        let t = Instant::now();
        let content = build(&input, &limits)?;
        let built = t.elapsed();
        let w = files.write(&content, 0)?;
        if let WriteOutcome::Written {
            seq,
            map_bytes,
            csv_bytes,
        } = w
        {
            println!(
                "seq={seq} keys={} csv_rows={} map_bytes={map_bytes} csv_bytes={csv_bytes} build_ms={:.1} write_ms={:.1}",
                content.keys(),
                content.csv_rows(),
                built.as_secs_f64() * 1e3,
                (t.elapsed() - built).as_secs_f64() * 1e3
            );
        }
        i += 1;
    }
    Ok(())
}
