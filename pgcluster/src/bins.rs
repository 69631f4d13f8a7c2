//! Finding the PostgreSQL server binaries (`PG_BIN_DIR`, `pg_config --bindir`,
//! `/usr/lib/postgresql/*/bin`, newest first).

use super::*;

/// The PostgreSQL server binaries in use.
#[derive(Debug, Clone)]
pub(crate) struct Bins {
    pub(crate) dir: PathBuf,
    /// Full `postgres --version` output, e.g. `postgres (PostgreSQL) 15.18 (Debian ...)`.
    pub(crate) version: String,
    /// Major version as written in `PG_VERSION`, e.g. `15`.
    pub(crate) major: String,
}

impl Bins {
    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Client tools: next to the server binaries, else on PATH.
    pub(crate) fn client_tool(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        if p.is_file() { p } else { PathBuf::from(name) }
    }
}

pub(crate) fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

/// Version number in a directory name like `/usr/lib/postgresql/15/bin`.
pub(crate) fn version_key(dir: &Path) -> Vec<u32> {
    dir.components()
        .filter_map(|c| {
            let s = c.as_os_str().to_str()?;
            let digits: String = s
                .trim_start_matches("pgsql-")
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if digits.is_empty() {
                return None;
            }
            Some(
                digits
                    .split('.')
                    .filter_map(|d| d.parse().ok())
                    .collect::<Vec<u32>>(),
            )
        })
        .next_back()
        .unwrap_or_default()
}

pub(crate) fn find_bin_dir() -> Result<PathBuf, Error> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        // An explicit override that is wrong is an error, not a hint.
        return Err(Error::BinariesNotFound {
            searched: vec![dir],
        });
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
    }
    let mut candidates = Vec::new();
    for (root, prefix, sub) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        if let Ok(entries) = fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(prefix)
                    && name[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
                {
                    candidates.push(e.path().join(sub));
                }
            }
        }
        searched.push(PathBuf::from(format!("{root}/{prefix}*/{sub}")));
    }
    candidates.sort_by_key(|d| std::cmp::Reverse(version_key(d)));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    searched.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates
        .into_iter()
        .find(|d| has_server_binaries(d))
        .ok_or(Error::BinariesNotFound { searched })
}

pub(crate) fn find_bins() -> Result<Bins, Error> {
    static CACHE: OnceLock<Bins> = OnceLock::new();
    if let Some(b) = CACHE.get() {
        return Ok(b.clone());
    }
    let dir = find_bin_dir()?;
    let postgres = dir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: postgres.clone(),
            source,
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // "postgres (PostgreSQL) 15.18 (Debian ...)": major is the part before
    // the first dot for >= 10.
    let number = version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("");
    let major = number
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("")
        .to_owned();
    let bins = Bins {
        dir,
        version,
        major,
    };
    Ok(CACHE.get_or_init(|| bins).clone())
}
