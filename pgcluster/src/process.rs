//! Running the PostgreSQL tools: a clean environment, captured output, the server log tail.

use super::*;

/// Environment variables that would change what the PostgreSQL tools do.
pub(crate) fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LC_ALL", "C").stdin(Stdio::null());
}

pub(crate) fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim_end();
    if !err.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(err);
    }
    s
}

pub(crate) fn run(mut cmd: Command) -> Result<Output, Error> {
    let program = PathBuf::from(cmd.get_program());
    tracing::debug!(?cmd, "pgcluster: running");
    cmd.output()
        .map_err(|source| Error::Spawn { program, source })
}

/// Tail of the log file from byte `from` on (at most LOG_TAIL_BYTES).
pub(crate) fn log_tail(path: &Path, from: u64) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log file at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = if from > len { 0 } else { from };
    let start = from.max(len.saturating_sub(LOG_TAIL_BYTES));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return format!("(could not read {})", path.display());
    }
    let text = String::from_utf8_lossy(&buf);
    let text = if start > from {
        // Drop the partial first line.
        text.split_once('\n').map(|x| x.1).unwrap_or(&text)
    } else {
        &text
    };
    let text = text.trim_end();
    if text.is_empty() {
        "(log is empty)".to_owned()
    } else {
        text.to_owned()
    }
}
